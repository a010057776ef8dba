"""The learnt re-ranker: its features, its model and how it is trained."""
