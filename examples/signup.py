"""A user sign-up that writes to three systems, and what happens when one is down.

The motivating case of the actionqueues 0.8.2 README: creating an account, opening
a billing record and queueing a welcome mail are three side effects on three
systems. When the mail system is down, the account and the billing record made so
far must be undone before the failure goes back to the user.

Run it with ``python examples/signup.py``. The three systems are in-memory stand-ins;
the durable, crash-proof version of this demo comes with the journal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actionqueues import ActionQueue, LoggingListener, RetryPolicy, report_of


class Unavailable(ConnectionError):
    """A system did not answer."""


@dataclass
class System:
    """An in-memory stand-in for an external system."""

    name: str
    down: bool = False
    flaky: int = 0  # fail this many calls, then work
    rows: dict[str, str] = field(default_factory=dict)

    def write(self, key: str, value: str) -> None:
        if self.down:
            raise Unavailable(f"{self.name} is down")
        if self.flaky:
            self.flaky -= 1
            raise Unavailable(f"{self.name} timed out")
        self.rows[key] = value

    def delete(self, key: str) -> None:
        self.rows.pop(key, None)


@dataclass
class Write:
    """An action: write one row to one system; rollback deletes it."""

    system: System
    key: str
    value: str

    def execute(self) -> None:
        self.system.write(self.key, self.value)

    def rollback(self) -> None:
        # Safe when execute never took effect: deleting a missing row is a no-op.
        self.system.delete(self.key)


def sign_up(email: str, users: System, billing: System, mail: System) -> None:
    """Create the account, the billing record and the welcome mail, or none of them."""
    queue = ActionQueue(
        name=f"sign up {email}",
        # Network blips are retried: 3 calls in all, short waits.
        retry=RetryPolicy(on=Unavailable, attempts=3, wait_initial=0.05, wait_jitter=0.05),
        listeners=[LoggingListener()],
    )
    queue.add(Write(users, email, "active"), name="create user")
    queue.add(Write(billing, email, "free plan"), name="open billing")
    queue.add(Write(mail, email, "welcome!"), name="queue welcome mail")
    try:
        report = queue.run()
    except Unavailable as error:
        print(f"sign-up of {email} failed: {error}")
        print(report_of(error))
    else:
        print(f"signed up {email}")
        print(report)


def show(*systems: System) -> None:
    for system in systems:
        print(f"  {system.name:<8} {system.rows}")


def main() -> None:
    users, billing, mail = System("users"), System("billing", flaky=1), System("mail")
    print("== 1. every system up (billing blips once and is retried)")
    sign_up("ada@example.com", users, billing, mail)
    show(users, billing, mail)

    print("\n== 2. the mail system is down: the user and billing rows are undone")
    mail.down = True
    sign_up("bob@example.com", users, billing, mail)
    show(users, billing, mail)
    assert "bob@example.com" not in users.rows
    assert "bob@example.com" not in billing.rows


if __name__ == "__main__":
    import logging
    import sys

    logging.basicConfig(
        stream=sys.stdout, level=logging.WARNING, format="  log: %(levelname)s %(message)s"
    )
    main()
