"""Scanning, decoding, cataloguing and vector storage for xmr libraries."""
