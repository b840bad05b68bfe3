"""What each channel's test module states for the shared contract suite
(``unit/channels/test_contract.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from notifsvc.config import Section, Settings


@dataclass(frozen=True)
class Case:
    #: The channel's settings with which it is enabled (None: it has none).
    config: Section | None
    #: Fields of ``config`` whose absence (default value) disables the channel.
    required: tuple[str, ...]
    good: str
    bad: tuple[str, ...]

    @property
    def settings(self) -> Settings:
        return Settings() if self.config is None else Settings().with_sections(self.config)
