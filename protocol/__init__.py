"""Sans-IO core of dgpu: identities, messages, signatures, receipts, state machines."""
