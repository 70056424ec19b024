"""Responsible use: the statement a user confirms before anything is generated, checked on the server.

The check runs inside every generating endpoint, so a caller of the HTTP API or ``gradio_client`` cannot skip
it by leaving out the checkbox.
"""

from __future__ import annotations

from ..errors import S3DNeRFError

CONSENT_STATEMENT = (
    "I have the right to use this portrait and this voice: they are mine, or their owner agreed. "
    "I will not use the video to deceive, impersonate, harass or defame anyone, and I will keep its "
    '"AI-generated" mark.'
)


class ConsentRequiredError(S3DNeRFError):
    """The responsible-use statement was not confirmed."""


def require_consent(confirmed) -> None:
    """Raise :class:`ConsentRequiredError` unless ``confirmed`` is exactly ``True`` (a ticked checkbox)."""
    if confirmed is not True:
        raise ConsentRequiredError(
            "Please confirm the responsible-use statement first (tick the consent box, or pass consent=True "
            "through the API): you need the right to use this face and voice."
        )
