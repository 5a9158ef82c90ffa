"""Sending a notice as mail through an SMTP server (local mode's `-m`/`-M`)."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from pathlib import Path

from hyperbatch.core.notices import Notice

TIMEOUT_SECONDS = 10.0


def message(notice: Notice, sender: str, to: list[str]) -> EmailMessage:
    """The mail PBS would send: `Subject: PBS JOB <id>`, and the job's id, name and what happened."""
    subject, text = notice.mail()
    out = EmailMessage()
    out["From"], out["To"], out["Subject"] = sender, ", ".join(to), subject
    out["X-HyperBatch-Event-Id"] = notice.event_id
    out.set_content(text)
    return out


def send_smtp(notice: Notice, to: list[str], *, sender: str, host: str, port: int, starttls: bool = False,
              username: str | None = None, password_file: str | None = None,
              timeout: float = TIMEOUT_SECONDS) -> None:
    """One mail through the server; smtplib's and the socket's errors say why it was not sent."""
    with smtplib.SMTP(host, port, timeout=timeout) as server:
        if starttls:
            server.starttls()
        if username:
            password = Path(password_file).read_text().strip() if password_file else ""
            server.login(username, password)
        server.send_message(message(notice, sender, to))
