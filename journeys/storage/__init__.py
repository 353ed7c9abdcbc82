"""The event store's adapters: the recorders (events, the touchpoint index, the hash chain's tables),
the customer repository, the keyring (customer keys to records and data keys), the audit trail (chain,
checkpoints, exports) and the database's outage handling. The domain (journeys/) does not import them;
the application service (journeys/application.py) and the wiring (projections/system.py) do."""
