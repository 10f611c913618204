"""Human pairwise preferences in a real Label Studio server: run it, push pairs as tasks, pull judgments back."""
