"""`execution_config.config`: the clustering algorithm, its parameters and the preprocessing.

One model per algorithm, with the defaults of the product we are measured against
(`../shared/seed/NOTES.md`). The models describe *what* to run; `flows.clusterers` turns
them into fitted estimators.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, model_validator

from prefect_cluster_triggers.core.models import StrictModel, field_error

# What one run can do. A parameter past these is a typo (`max_iter` of 10^400) that would
# otherwise be stored and fail only in the run.
MAX_CLUSTERS = 1000  # n_clusters, gaussian_mixture's n_components
MAX_ITERATIONS = 10_000  # max_iter
MAX_INITS = 100  # n_init: whole k-means fits in one run
MAX_DOCUMENTS = 100_000_000  # sample_size, batch_size, min_cluster_size, max_cluster_size
MAX_NEIGHBOURS = 10_000  # n_neighbors, min_samples: one document's neighbourhood
MAX_DIMENSIONS = 4096  # reduce.n_components

Iterations = Annotated[StrictInt, Field(ge=1, le=MAX_ITERATIONS)]
Inits = Annotated[StrictInt, Field(ge=1, le=MAX_INITS)]
Documents = Annotated[StrictInt, Field(ge=1, le=MAX_DOCUMENTS)]
AtLeastTwoDocuments = Annotated[StrictInt, Field(ge=2, le=MAX_DOCUMENTS)]
Neighbours = Annotated[StrictInt, Field(ge=1, le=MAX_NEIGHBOURS)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
ClusterCount = Annotated[StrictInt, Field(ge=2, le=MAX_CLUSTERS)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]


class Reduce(StrictModel):
    """Dimension reduction before clustering.

    Density-based algorithms slow down sharply with dimension (HDBSCAN on 384-d vectors
    takes minutes at 20k documents, seconds after PCA to 16), so HDBSCAN reduces by default.
    """

    method: Literal["none", "pca"] = Field("none", description="`none` or `pca`.")
    n_components: Annotated[StrictInt, Field(ge=1, le=MAX_DIMENSIONS)] | None = Field(
        None, description="Target dimension for `pca` (16 when omitted); clamped to the data's dimension."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"method": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _components_only_for_pca(self) -> Reduce:
        if self.method == "none" and self.n_components is not None:
            raise ValueError("n_components is only allowed with method 'pca'")
        if self.method == "pca" and self.n_components is None:
            return self.model_copy(update={"n_components": 16})
        return self


class AlgorithmConfig(StrictModel):
    """Preprocessing options shared by every algorithm."""

    algorithm: str = Field(description="Which algorithm runs; each subclass narrows it to its own name.")
    normalize: StrictBool = Field(True, description="L2-normalise vectors first (cosine geometry).")
    reduce: Reduce = Field(default_factory=Reduce, description="Dimension reduction before clustering.")
    sample_size: AtLeastTwoDocuments | None = Field(
        None, description="Fit on a random sample of this size, then assign every document to its nearest cluster."
    )


class KMeansConfig(AlgorithmConfig):
    """k-means (scikit-learn's, seeded k-means++ and refined on a sub-sample): `n_clusters` centroids."""
    algorithm: Literal["kmeans"]
    n_clusters: ClusterCount = 8
    max_iter: Iterations = 300
    n_init: Inits = 10
    init: Literal["k-means++", "random"] = "k-means++"
    tol: Annotated[float, Field(strict=True, ge=0)] = 1e-4
    random_state: Seed = 42


class MiniBatchKMeansConfig(AlgorithmConfig):
    """k-means on mini-batches: memory and time linear in the documents, for large collections."""

    algorithm: Literal["minibatch_kmeans"]
    n_clusters: ClusterCount = 8
    batch_size: Documents = 4096
    max_iter: Iterations = 100
    n_init: Inits = 3
    init: Literal["k-means++", "random"] = "k-means++"
    tol: Annotated[float, Field(strict=True, ge=0)] = 0.0
    random_state: Seed = 42


class HDBSCANConfig(AlgorithmConfig):
    """HDBSCAN: density-based clusters of at least `min_cluster_size`, noise left out; reduced by PCA first."""
    algorithm: Literal["hdbscan"]
    reduce: Reduce = Field(default_factory=lambda: Reduce(method="pca", n_components=16))
    min_cluster_size: AtLeastTwoDocuments = 5
    min_samples: Neighbours | None = None
    cluster_selection_epsilon: Annotated[float, Field(strict=True, ge=0)] = 0.0
    max_cluster_size: Documents | None = None
    metric: Literal["euclidean", "manhattan", "chebyshev"] = "euclidean"
    cluster_selection_method: Literal["eom", "leaf"] = "eom"
    allow_single_cluster: StrictBool = False


class DBSCANConfig(AlgorithmConfig):
    """DBSCAN: clusters of points with `min_samples` neighbours within `eps`; noise left out."""
    algorithm: Literal["dbscan"]
    eps: PositiveFloat = 0.5
    min_samples: Neighbours = 5
    metric: Literal["euclidean", "manhattan", "cosine", "chebyshev"] = "euclidean"


class AgglomerativeConfig(AlgorithmConfig):
    """Hierarchical clustering; either a cluster count or a distance threshold, never both."""

    algorithm: Literal["agglomerative"]
    n_clusters: ClusterCount | None = 2
    linkage: Literal["ward", "complete", "average", "single"] = "ward"
    distance_threshold: PositiveFloat | None = None

    @model_validator(mode="before")
    @classmethod
    def _threshold_replaces_count(cls, data: Any) -> Any:
        # n_clusters has a default; a user who sets distance_threshold alone means "no count".
        if isinstance(data, dict) and data.get("distance_threshold") is not None and "n_clusters" not in data:
            return {**data, "n_clusters": None}
        return data

    @model_validator(mode="after")
    def _count_or_threshold(self) -> AgglomerativeConfig:
        if (self.n_clusters is None) == (self.distance_threshold is None):
            raise ValueError("give exactly one of n_clusters and distance_threshold")
        return self


class SpectralConfig(AlgorithmConfig):
    """Spectral clustering of an affinity graph into `n_clusters`."""
    algorithm: Literal["spectral"]
    n_clusters: ClusterCount = 8
    affinity: Literal["rbf", "nearest_neighbors"] = "rbf"
    n_neighbors: Neighbours = 10
    random_state: Seed = 42


class GaussianMixtureConfig(AlgorithmConfig):
    """A Gaussian mixture of `n_components`; each document goes to its most likely component."""
    algorithm: Literal["gaussian_mixture"]
    n_components: Annotated[StrictInt, Field(ge=1, le=MAX_CLUSTERS)] = 1
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    max_iter: Iterations = 100
    random_state: Seed = 42


class MeanShiftConfig(AlgorithmConfig):
    """Mean shift: as many clusters as density modes, for a kernel `bandwidth`."""
    algorithm: Literal["mean_shift"]
    bandwidth: PositiveFloat | None = Field(None, description="Kernel bandwidth; estimated from the data when empty.")
    bin_seeding: StrictBool = False
    cluster_all: StrictBool = True


class OPTICSConfig(AlgorithmConfig):
    """OPTICS: density-based clusters at varying density, up to `max_eps`; noise left out."""
    algorithm: Literal["optics"]
    min_samples: Annotated[StrictInt, Field(ge=2, le=MAX_NEIGHBOURS)] = 5
    max_eps: PositiveFloat | None = Field(None, description="Largest neighbourhood radius; unbounded when empty.")
    cluster_method: Literal["xi", "dbscan"] = "xi"
    xi: Annotated[float, Field(strict=True, ge=0, le=1)] = 0.05
    eps: PositiveFloat | None = Field(None, description="Radius for cluster_method 'dbscan'.")


ClusteringConfig = Annotated[
    KMeansConfig
    | MiniBatchKMeansConfig
    | HDBSCANConfig
    | DBSCANConfig
    | AgglomerativeConfig
    | SpectralConfig
    | GaussianMixtureConfig
    | MeanShiftConfig
    | OPTICSConfig,
    Field(discriminator="algorithm"),
]

ALGORITHMS: dict[str, type[AlgorithmConfig]] = {
    model.model_fields["algorithm"].annotation.__args__[0]: model  # type: ignore[union-attr]
    for model in (
        KMeansConfig,
        MiniBatchKMeansConfig,
        HDBSCANConfig,
        DBSCANConfig,
        AgglomerativeConfig,
        SpectralConfig,
        GaussianMixtureConfig,
        MeanShiftConfig,
        OPTICSConfig,
    )
}


def validate_clustering_config(value: Any) -> AlgorithmConfig:
    """Pick the parameter model by `algorithm` so that errors point at `config.<param>`.

    A pydantic tagged union would report `config.kmeans.n_clusters`; users never typed `kmeans`
    as a key, so we dispatch ourselves.
    """
    if isinstance(value, AlgorithmConfig):
        return value
    allowed = ", ".join(ALGORITHMS)
    if not isinstance(value, dict):
        raise field_error((), "config_type", f"must be an object with an 'algorithm' key, one of: {allowed}", value)
    algorithm = value.get("algorithm")
    if algorithm is None:
        raise field_error(("algorithm",), "required", f"required; one of: {allowed}", None)
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise field_error(("algorithm",), "unknown_algorithm", f"unknown algorithm; allowed: {allowed}", algorithm)
    return ALGORITHMS[algorithm].model_validate(value)
