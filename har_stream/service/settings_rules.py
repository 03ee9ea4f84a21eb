"""The settings table of docs/SERVICE.md, generated from the declarations of `har-stream run`.

`python -m har_stream.service.settings_rules` prints its rows, to paste between the markers;
a test keeps the page equal to them.
"""

from __future__ import annotations

from har_stream.core.option_rules import markdown_table
from har_stream.core.options import nested_settings


def service_table() -> str:
    """The rows of the settings table of docs/SERVICE.md, for `har-stream run`."""
    from har_stream.service.settings import Settings

    return markdown_table(Settings, nested_settings)


if __name__ == "__main__":  # python -m har_stream.service.settings_rules: the table, to paste
    print(service_table())
