"""The one shared clustering flow (`clustering_flow`) and its Prefect-free engine (`engine`)."""
