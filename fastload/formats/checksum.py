"""CRC32C (Castagnoli), hardware-accelerated where the package provides it: TFRecord framing
and the checksum ``fastload convert`` stores beside each LMDB image."""

try:
    from crc32c import crc32c
except ImportError:  # pragma: no cover - google-crc32c spells it differently
    from google_crc32c import value as crc32c  # type: ignore[no-redef]

__all__ = ["crc32c"]
