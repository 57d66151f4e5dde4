"""The Prefect-free core: the contract, its bounds and errors, the firing and check rules, names and settings."""
