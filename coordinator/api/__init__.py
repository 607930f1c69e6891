"""HTTP API under ``/api/v1`` (JSON; offers and receipts also as canonical MessagePack)."""
