"""The server's own log on stderr (``--log-format``): text lines, or one JSON object a line.

Either way each record is one line: what a peer or a job put into a message (a :path, an
argv) cannot forge another. Text escapes control characters (_text.escape); JSON has
``json.dumps`` escape them, and everything else that is not ASCII.
"""

import datetime
import json
import logging
from typing import Literal

from .._text import escape

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


class OneLineFormatter(logging.Formatter):
    """Log lines that stay one line each: what a peer or a job put into a message (a
    :path, an argv) has its control characters escaped, so it cannot forge a line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (RFC 3339, UTC), ``level``, ``logger``,
    ``message``, and ``exc_info`` (the traceback) or ``stack_info`` when the record has
    them."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=True, separators=(",", ":"))


def formatter(kind: LogFormat) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else OneLineFormatter(TEXT)
