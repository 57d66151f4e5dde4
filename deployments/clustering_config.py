"""`execution_config.config`: the clustering algorithm, its parameters and the preprocessing.

One model per algorithm, with the defaults of the product we are measured against
(`../shared/seed/NOTES.md`). The models describe *what* to run; `flows.clusterers` turns
them into fitted estimators.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, model_validator
from prefect_cluster_triggers.deployments._models import StrictModel, field_error

PositiveInt = Annotated[StrictInt, Field(ge=1)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
ClusterCount = Annotated[StrictInt, Field(ge=2, le=1000)]
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]


class Reduce(StrictModel):
    """Dimension reduction before clustering.

    Density-based algorithms slow down sharply with dimension (HDBSCAN on 384-d vectors
    takes minutes at 20k documents, seconds after PCA to 16), so HDBSCAN reduces by default.
    """

    method: Literal["none", "pca"] = Field("none", description="`none` or `pca`.")
    n_components: PositiveInt | None = Field(
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


class _AlgorithmConfig(StrictModel):
    """Preprocessing options shared by every algorithm."""

    algorithm: str = Field(description="Which algorithm runs; each subclass narrows it to its own name.")
    normalize: StrictBool = Field(True, description="L2-normalise vectors first (cosine geometry).")
    reduce: Reduce = Field(default_factory=Reduce, description="Dimension reduction before clustering.")
    sample_size: Annotated[StrictInt, Field(ge=2)] | None = Field(
        None, description="Fit on a random sample of this size, then assign every document to its nearest cluster."
    )


class KMeansConfig(_AlgorithmConfig):
    algorithm: Literal["kmeans"]
    n_clusters: ClusterCount = 8
    max_iter: PositiveInt = 300
    n_init: PositiveInt = 10
    init: Literal["k-means++", "random"] = "k-means++"
    tol: Annotated[float, Field(strict=True, ge=0)] = 1e-4
    random_state: Seed = 42


class MiniBatchKMeansConfig(_AlgorithmConfig):
    """k-means on mini-batches: memory and time linear in the documents, for large collections."""

    algorithm: Literal["minibatch_kmeans"]
    n_clusters: ClusterCount = 8
    batch_size: PositiveInt = 4096
    max_iter: PositiveInt = 100
    n_init: PositiveInt = 3
    init: Literal["k-means++", "random"] = "k-means++"
    tol: Annotated[float, Field(strict=True, ge=0)] = 0.0
    random_state: Seed = 42


class HDBSCANConfig(_AlgorithmConfig):
    algorithm: Literal["hdbscan"]
    reduce: Reduce = Field(default_factory=lambda: Reduce(method="pca", n_components=16))
    min_cluster_size: Annotated[StrictInt, Field(ge=2)] = 5
    min_samples: PositiveInt | None = None
    cluster_selection_epsilon: Annotated[float, Field(strict=True, ge=0)] = 0.0
    max_cluster_size: PositiveInt | None = None
    metric: Literal["euclidean", "manhattan", "chebyshev"] = "euclidean"
    cluster_selection_method: Literal["eom", "leaf"] = "eom"
    allow_single_cluster: StrictBool = False


class DBSCANConfig(_AlgorithmConfig):
    algorithm: Literal["dbscan"]
    eps: PositiveFloat = 0.5
    min_samples: PositiveInt = 5
    metric: Literal["euclidean", "manhattan", "cosine", "chebyshev"] = "euclidean"


class AgglomerativeConfig(_AlgorithmConfig):
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


class SpectralConfig(_AlgorithmConfig):
    algorithm: Literal["spectral"]
    n_clusters: ClusterCount = 8
    affinity: Literal["rbf", "nearest_neighbors"] = "rbf"
    n_neighbors: PositiveInt = 10
    random_state: Seed = 42


class GaussianMixtureConfig(_AlgorithmConfig):
    algorithm: Literal["gaussian_mixture"]
    n_components: Annotated[StrictInt, Field(ge=1, le=1000)] = 1
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    max_iter: PositiveInt = 100
    random_state: Seed = 42


class MeanShiftConfig(_AlgorithmConfig):
    algorithm: Literal["mean_shift"]
    bandwidth: PositiveFloat | None = Field(None, description="Kernel bandwidth; estimated from the data when empty.")
    bin_seeding: StrictBool = False
    cluster_all: StrictBool = True


class OPTICSConfig(_AlgorithmConfig):
    algorithm: Literal["optics"]
    min_samples: Annotated[StrictInt, Field(ge=2)] = 5
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

ALGORITHMS: dict[str, type[_AlgorithmConfig]] = {
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


def validate_clustering_config(value: Any) -> _AlgorithmConfig:
    """Pick the parameter model by `algorithm` so that errors point at `config.<param>`.

    A pydantic tagged union would report `config.kmeans.n_clusters`; users never typed `kmeans`
    as a key, so we dispatch ourselves.
    """
    if isinstance(value, _AlgorithmConfig):
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
