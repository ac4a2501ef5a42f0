"""Errors raised by the dataset layer: one clear line naming the file, the problem and the fix."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset file is malformed, has the wrong size, or fails its checksum."""


class DatasetFileMissingError(DatasetError, FileNotFoundError):
    """A dataset file is absent and could not be downloaded (or downloading was disabled)."""
