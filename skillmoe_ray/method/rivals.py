"""The rival routers a user would pick instead of Symbolic-MoE today, as recruitment policies.

Both route by an embedding of the question itself (the skill mapping's sentence encoder), not by its
skills, and learn from what the profiles stage already has: every pool model's graded answer to every
validation question. Adding them to a run costs no validation generation.

- ``avengers``: the Avengers recipe (Zhang et al., "The Avengers: A Simple Recipe for Uniting Smaller
  Language Models to Challenge Proprietary Giants", arXiv 2505.19797, AAAI 2026). Its rule: embed the
  queries, cluster them (k-means), score each model's performance within each cluster; at inference
  "each query is embedded and assigned to its nearest cluster. The top-performing model(s) within that
  cluster are selected to generate the response", with repeated sampling and voting. Here: the validation
  questions in ``recruit.avengers.n_clusters`` k-means clusters (scikit-learn, seeded by the run seed);
  each model's accuracy per cluster; a test question recruits the k models most accurate on its nearest
  cluster, and their answers are voted (or aggregated: ``recruit.avengers.combine``).
- ``knn``: a nearest-neighbour router, the baseline router benchmarks (RouterBench, LLMRouterBench) find
  hard to beat: each model is scored by its accuracy on the question's ``recruit.knn.n_neighbors`` most
  cosine-similar validation questions, each neighbour weighted by 1 / (cosine distance + 1e-6); the k best
  are recruited.

Both recruit k distinct models, best first (past the pool's size the ranking repeats, as a model's
further samples); ties go to the model more accurate on the whole validation split, then to pool order.
A recruitment's ``probabilities`` are the models' routing scores, normalized to sum to 1.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from skillmoe_ray.config import RecruitConfig
from skillmoe_ray.method.recruit import Recruitment, RecruitResult, summarize
from skillmoe_ray.method.skills import Embedder
from skillmoe_ray.seeding import derive_seed

# Added to a neighbour's cosine distance before its inverse weights it (a validation question identical to
# the test question would otherwise weigh infinitely)
DISTANCE_FLOOR = 1e-6
Grading = Mapping[str, Mapping[str, bool]]  # model -> validation instance id -> its answer was correct


@dataclass(frozen=True)
class QuestionEvidence:
    """What the embedding routers read: the validation questions' embeddings (rows, in ``val_ids`` order),
    every model's grading on them (model -> validation id -> correct, the profiles stage's), and each test
    question's embedding (instance id -> vector)."""

    val_ids: tuple[str, ...]
    val_embeddings: np.ndarray
    correct: Grading
    test_embeddings: Mapping[str, np.ndarray]

    @classmethod
    def embed(cls, embed: Embedder, val_questions: Mapping[str, str], correct: Grading,
              test_questions: Mapping[str, str]) -> QuestionEvidence:
        """The evidence of validation and test questions (id -> text) embedded by ``embed``, in one call."""
        texts = [*val_questions.values(), *test_questions.values()]
        vectors = np.asarray(embed(texts), dtype=float) if texts else np.zeros((0, 1))
        n = len(val_questions)
        return cls(tuple(val_questions), vectors[:n], correct, dict(zip(test_questions, vectors[n:])))


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (cosine geometry, whatever the embedder returns)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def correct_matrix(evidence: QuestionEvidence, pool: Sequence[str]) -> np.ndarray:
    """(validation questions x pool models) 1.0 where the model answered correctly (an ungraded answer: 0)."""
    graded = evidence.correct
    return np.array([[float(graded.get(m, {}).get(v, False)) for m in pool] for v in evidence.val_ids])


def ranking(scores: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Per row, the model indices by score (best first); ties by ``tiebreak`` (higher first), then index."""
    index = np.arange(scores.shape[1])
    return np.array([np.lexsort((index, -tiebreak, -row)) for row in scores], dtype=int).reshape(scores.shape)


@functools.lru_cache(maxsize=8)
def _kmeans(data: bytes, shape: tuple[int, int], n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    x = np.frombuffer(data, dtype=float).reshape(shape)
    model = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit(x)
    return model.cluster_centers_, model.labels_


def kmeans(x: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids and each row's cluster: scikit-learn's k-means, 10 seeded starts (remembered per input, so
    online serving clusters the validation split once)."""
    x = np.ascontiguousarray(x, dtype=float)
    return _kmeans(x.tobytes(), x.shape, n_clusters, seed)


def cluster_accuracy(labels: np.ndarray, correct: np.ndarray, n_clusters: int) -> np.ndarray:
    """(clusters x models) accuracy of each model on each cluster's validation questions."""
    sums = np.zeros((n_clusters, correct.shape[1]))
    np.add.at(sums, labels, correct)
    counts = np.bincount(labels, minlength=n_clusters)[:, None]
    return sums / np.clip(counts, 1, None)


def avengers_scores(val: np.ndarray, correct: np.ndarray, test: np.ndarray, n_clusters: int,
                    seed: int) -> np.ndarray:
    """(test questions x models): each model's accuracy on the test question's nearest cluster."""
    centroids, labels = kmeans(unit_rows(val), n_clusters, seed)
    accuracy = cluster_accuracy(np.asarray(labels), correct, n_clusters)
    distances = ((unit_rows(test)[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return accuracy[np.argmin(distances, axis=1)]


def knn_scores(val: np.ndarray, correct: np.ndarray, test: np.ndarray, n_neighbors: int) -> np.ndarray:
    """(test questions x models): each model's closeness-weighted accuracy on the test question's
    ``n_neighbors`` most cosine-similar validation questions (equally similar ones: the earlier first)."""
    similarity = unit_rows(test) @ unit_rows(val).T
    n = min(n_neighbors, similarity.shape[1])
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :n]
    distance = np.clip(1.0 - np.take_along_axis(similarity, nearest, axis=1), 0.0, None)  # rounding: >= 0
    weights = 1.0 / (distance + DISTANCE_FLOOR)
    return np.einsum("tn,tnm->tm", weights, correct[nearest]) / weights.sum(axis=1, keepdims=True)


def top_k(order: Sequence[int], k: int, pool: Sequence[str]) -> tuple[str, ...]:
    """The k first models of a ranking; past the pool's size it starts again (a model's next sample)."""
    return tuple(pool[order[i % len(order)]] for i in range(k))


def recruit_by_scores(instance_skills: Mapping[str, Sequence[str]], scores: np.ndarray, tiebreak: np.ndarray,
                      pool: Sequence[str], k: int) -> list[Recruitment]:
    """Each instance's k best models by its row of ``scores``, with the scores normalized as probabilities."""
    out = []
    for iid, row, order in zip(instance_skills, scores, ranking(scores, tiebreak)):
        total = row.sum()
        probabilities = {m: float(s / total) if total > 0 else 1.0 / len(pool) for m, s in zip(pool, row)}
        out.append(Recruitment(iid, tuple(instance_skills[iid]), top_k(order, k, pool), probabilities))
    return out


def _evidence_arrays(instance_skills: Mapping[str, Sequence[str]], pool: Sequence[str],
                     evidence: QuestionEvidence | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation embeddings, their grading (questions x pool models) and the instances' embeddings."""
    if evidence is None:
        raise ValueError("the embedding routers need a QuestionEvidence (embeddings and validation grading)")
    correct = correct_matrix(evidence, pool)
    test = np.array([evidence.test_embeddings[iid] for iid in instance_skills], dtype=float)
    return evidence.val_embeddings, correct, test.reshape(len(instance_skills), -1)


def recruit_avengers(instance_skills: Mapping[str, Sequence[str]], profiles: Mapping[str, Mapping[str, int]],
                     global_dist: Mapping[str, float], pool: Sequence[str], rc: RecruitConfig, seed: int,
                     evidence: QuestionEvidence | None = None,
                     resident: Collection[str] = ()) -> RecruitResult:
    """Avengers (arXiv 2505.19797): the k models most accurate on the question's nearest cluster of
    validation questions (k-means into ``rc.avengers.n_clusters``, seeded by ``seed``). A RecruitPolicy
    (``resident`` unused: the rule has no notion of a loaded model)."""
    val, correct, test = _evidence_arrays(instance_skills, pool, evidence)
    n_clusters = rc.avengers.n_clusters
    scores = test  # no question: no scores
    if len(test):
        scores = avengers_scores(val, correct, test, n_clusters, derive_seed(seed, "avengers"))
    out = recruit_by_scores(instance_skills, scores, correct.mean(axis=0), pool, rc.k)
    return RecruitResult(out, summarize(out, "avengers", rc.k * len(out), n_clusters=n_clusters))


def recruit_knn(instance_skills: Mapping[str, Sequence[str]], profiles: Mapping[str, Mapping[str, int]],
                global_dist: Mapping[str, float], pool: Sequence[str], rc: RecruitConfig, seed: int,
                evidence: QuestionEvidence | None = None,
                resident: Collection[str] = ()) -> RecruitResult:
    """Nearest neighbours: the k models most accurate (closeness-weighted) on the question's
    ``rc.knn.n_neighbors`` most similar validation questions. A RecruitPolicy (``seed`` unused: no draw)."""
    val, correct, test = _evidence_arrays(instance_skills, pool, evidence)
    scores = knn_scores(val, correct, test, rc.knn.n_neighbors) if len(test) else test
    out = recruit_by_scores(instance_skills, scores, correct.mean(axis=0), pool, rc.k)
    return RecruitResult(out, summarize(out, "knn", rc.k * len(out), n_neighbors=rc.knn.n_neighbors))
