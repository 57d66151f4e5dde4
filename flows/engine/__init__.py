"""The engine: numpy and scikit-learn code that samples, fits, assigns and measures; no Prefect."""
