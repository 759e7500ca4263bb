"""Sphinx configuration: furo, MyST Markdown, autodoc with Napoleon. Nothing is fetched."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "actionqueues"
author = "The actionqueues developers"
copyright = "the actionqueues developers"
release = _version("actionqueues")
version = ".".join(release.split(".")[:2])

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
# Headings get anchors, so pages link to each other's sections: [text](page.md#anchor).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# The API reference is generated from the installed package's docstrings.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"actionqueues {release}"
# A block without a language is Python; ```output blocks (what an example prints)
# use Pygments' "output" lexer, plain text.
highlight_language = "python3"
# "Attributes:" sections describe a class's fields; autodoc would list them again.
napoleon_use_ivar = True
# Types in signatures read StepStatus, not actionqueues._report.StepStatus.
python_use_unqualified_type_names = True


def _skip_field_aliases(
    app: object, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """Leave out a named tuple's field accessors ("Alias for field number 0")."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_field_aliases)  # type: ignore[attr-defined]
