"""Sweeps: plan a grid of runs (:mod:`.plan`), execute one run (:mod:`.execute`), run tasks
resumably in worker processes (:mod:`.tasks`) on this machine or on Ray (:mod:`.backends`)."""
