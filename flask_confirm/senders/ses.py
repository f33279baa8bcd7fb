"""The ``ses`` sender: Amazon SES's v2 API, through boto3."""

from __future__ import annotations

import typing as t

from ..config import Keys
from ..errors import ConfigError
from ..mail.message import EmailMessage
from ..mail.mime import ascii_address

if t.TYPE_CHECKING:
    from flask import Flask


class SESSender:
    """Sends through Amazon SES (the v2 API) with boto3.

    Credentials and the endpoint come from boto3's standard chain (environment,
    shared config, instance role; ``AWS_ENDPOINT_URL`` is honoured), the region
    from :data:`CONFIRM_SES_REGION` or that chain. The client is made on the
    first message and reused. The returned message id is SES's ``MessageId``.
    Addresses are passed as SES asks: a non-ASCII name as encoded words, an
    internationalised domain in IDNA; a local part that is not ASCII, which
    SES cannot carry, is refused (permanently for a recipient).
    """

    def __init__(self, app: Flask) -> None:
        try:
            import boto3
        except ImportError as e:
            raise ConfigError(
                f"{Keys.SENDER} = 'ses' needs boto3: install 'flask-confirm[ses]',"
                " or choose another sender."
            ) from e
        self._boto3 = boto3
        self._region: str | None = app.config.get(Keys.SES_REGION) or None
        self._client: t.Any = None

    @property
    def client(self) -> t.Any:
        """The ``sesv2`` client, made on first use."""
        if self._client is None:
            self._client = self._boto3.client("sesv2", region_name=self._region)
        return self._client

    def send(self, message: EmailMessage) -> str | None:
        response = self.client.send_email(
            FromEmailAddress=ascii_address(message.sender, "sender", "SES"),
            Destination={
                "ToAddresses": [ascii_address(message.to, "recipient", "SES")]
            },
            Content={
                "Simple": {
                    "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": message.text, "Charset": "UTF-8"},
                        "Html": {"Data": message.html, "Charset": "UTF-8"},
                    },
                }
            },
        )
        return t.cast("str", response["MessageId"])

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
