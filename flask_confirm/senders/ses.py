"""The ``ses`` sender: Amazon SES's v2 API, through boto3."""

from __future__ import annotations

import typing as t

from ..config import Keys
from ..errors import ConfigError
from ..mail.message import EmailMessage
from ..mail.message import KIND_TAG
from ..mail.mime import ascii_address
from ..mail.mime import AUTO_SUBMITTED_HEADERS

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

    Every message carries the ``Auto-Submitted: auto-generated`` and
    ``X-Auto-Response-Suppress: All`` headers (no vacation replies to a
    no-reply box), the tag ``flask-confirm-kind`` naming its kind, and, with
    :data:`CONFIRM_SES_CONFIGURATION_SET`, that configuration set, whose
    event destinations publish its bounces and complaints.
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
        self._configuration_set: str | None = (
            app.config.get(Keys.SES_CONFIGURATION_SET) or None
        )
        self._client: t.Any = None

    @property
    def client(self) -> t.Any:
        """The ``sesv2`` client, made on first use."""
        if self._client is None:
            self._client = self._boto3.client("sesv2", region_name=self._region)
        return self._client

    def send(self, message: EmailMessage) -> str | None:
        request: dict[str, t.Any] = {
            "FromEmailAddress": ascii_address(message.sender, "sender", "SES"),
            "Destination": {
                "ToAddresses": [ascii_address(message.to, "recipient", "SES")]
            },
            "Content": {
                "Simple": {
                    "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": message.text, "Charset": "UTF-8"},
                        "Html": {"Data": message.html, "Charset": "UTF-8"},
                    },
                    "Headers": [
                        {"Name": name, "Value": value}
                        for name, value in AUTO_SUBMITTED_HEADERS
                    ],
                }
            },
        }
        if message.kind is not None:
            request["EmailTags"] = [{"Name": KIND_TAG, "Value": message.kind}]
        if self._configuration_set is not None:
            request["ConfigurationSetName"] = self._configuration_set
        response = self.client.send_email(**request)
        return t.cast("str", response["MessageId"])

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
