"""Training: one engine for every stage, recipes as data, checkpoints, run folders.

* ``config``: ``Stage`` and ``TrainConfig``, a recipe as data (JSON/YAML), checked when made;
* ``engine``: the one training loop (``train``), its optimizer and schedule, clipping, bf16, DDP;
* ``distributed``: which process this is under torchrun (rank 0 decides in one place);
* ``checkpoint``: safe state_dict checkpoints, the resume state, ``cached_fit``;
* ``recipes``: the course's recipes (``course_recipe``) and what the notebooks call to run them;
* ``learnability``: the grade reader of notebook 00 (how learnable the synthetic data is);
* ``runs``: a run folder (``train_run``, ``load_run``, ``evaluate_run``), what ``mdnet train`` writes.
"""
