"""Preference data: records with ties, strength and many annotators; agreement; import, store, split, export."""
