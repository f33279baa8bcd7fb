"""The checks of the SES event keys: :data:`CONFIRM_SES_EVENTS`,
:data:`CONFIRM_SES_EVENT_TOPICS`, :data:`CONFIRM_SNS_CERTIFICATES`."""

from __future__ import annotations

import re
import typing as t

from ..errors import ConfigError
from .keys import Keys

#: An SNS topic's ARN: ``arn:<partition>:sns:<region>:<account>:<name>``.
TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}")


def _topics(config: t.Mapping[str, t.Any], events: bool) -> tuple[str, ...]:
    value = config[Keys.SES_EVENT_TOPICS]
    values = [value] if isinstance(value, str) else value
    fix = (
        f"{Keys.SES_EVENT_TOPICS} must list the ARNs of the SNS topics the SES"
        " events come from, such as"
        " ['arn:aws:sns:eu-west-1:123456789012:ses-events']"
    )
    if not isinstance(values, (list, tuple, set, frozenset)):
        raise ConfigError(f"{fix}; got {value!r}.")
    topics = []
    for item in values:
        if not isinstance(item, str) or not TOPIC_ARN.fullmatch(item):
            raise ConfigError(f"{fix}; {item!r} is not one.")
        topics.append(item)
    if events and not topics:
        raise ConfigError(
            f"{Keys.SES_EVENTS} is on but {Keys.SES_EVENT_TOPICS} is empty: {fix}."
            " Messages from any other topic are refused, so with none every"
            " event would be."
        )
    return tuple(topics)


def _certificates(config: t.Mapping[str, t.Any]) -> dict[str, str]:
    value = config[Keys.SNS_CERTIFICATES]
    fix = (
        f"{Keys.SNS_CERTIFICATES} must map SNS signing certificate URLs to their"
        " PEM text, such as {'https://sns.eu-west-1.amazonaws.com/"
        "SimpleNotificationService-....pem': '-----BEGIN CERTIFICATE-----...'},"
        " or be {} to fetch them"
    )
    if not isinstance(value, t.Mapping):
        raise ConfigError(f"{fix}; got {type(value).__name__}.")
    for url, pem in value.items():
        if not isinstance(url, str) or not isinstance(pem, (str, bytes)):
            raise ConfigError(f"{fix}; {url!r} is not mapped to PEM text.")
    return {
        url: pem if isinstance(pem, str) else pem.decode() for url, pem in value.items()
    }
