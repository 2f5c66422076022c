"""Public datasets cinefuse trains and evaluates on (MovieLens), loaded with numpy/pandas only."""

from cinefuse.datasets.movielens import Movies, Ratings, detect_version, load_movies, load_ratings, load_tags

__all__ = ["Movies", "Ratings", "detect_version", "load_movies", "load_ratings", "load_tags"]
