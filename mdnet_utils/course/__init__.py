"""Course upkeep: the tools that keep the course's notebooks, not the ML library the notebooks teach.

The course is the notebooks in ``config.notebooks_dir`` (``notebooks/`` of the checkout, or of
``$MDNET_ROOT``). Upkeep is six jobs, all reading a notebook through ``notebook``:

* ``checks``: every notebook opens and closes the same way; ``check_structure`` says what one lacks.
* ``runner``: ``make run`` executes the notebooks in place, full mode (``run_notebooks``); ``make runtimes``
  times them in fast mode. Both record each notebook's time through ``runtimes`` (``notebooks/runtimes.json``,
  the one source the openings and the README quote).
* ``student``: ``make student`` writes the student edition, solutions replaced by stubs
  (``build_student_edition``).
* ``site``: ``make site`` renders the course as static HTML (``build_site``).
* ``prose``: every decimal figure a notebook's prose quotes is in its outputs, or a constant of
  ``notebooks/prose_constants.yml`` with its source (``unbacked_figures``; held by tests/test_prose.py).
* ``translation``: the Chinese edition (``make zh``, README.zh.md): the translations of the markdown cells in
  ``notebooks/zh/NN_slug.yml``, keyed by the hash of the English they translate (``sync_translation``,
  ``translation_problems``, ``translated_notebook``, ``build_zh``); ``fidelity`` checks one translated cell
  against its English and the glossary ``notebooks/zh/glossary.yml``; ``zh`` is the ``zh`` command.

The dependencies run one way: ``notebook`` imports no other course module; ``checks``, ``runner``,
``student``, ``site``, ``prose`` and ``translation`` import ``notebook`` (and ``mdnet_utils.io`` to write;
``runner`` and ``prose`` read ``runtimes``, ``translation`` reads ``fidelity``, both of which import no other
course module); ``student`` and ``site`` read ``translation`` for their Chinese editions, and ``zh`` calls
``translation`` and ``student``; no
submodule imports this package's ``__init__``, and nothing in the ML library imports this package
(tests/test_notebooks.py holds the graph acyclic, ``notebook`` a leaf, and the library clear of it).

Importing any course module imports nbformat, nbclient and nbconvert at the top (2.2-2.5 s and 79 MB,
measured with /usr/bin/time; 1.8 s of it is nbformat, whose jsonschema builds an RFC 3987 grammar on
import): only the course commands and their tests import this package, so that is paid only there.
"""
from __future__ import annotations

from mdnet_utils.course.checks import CLOSING, MIN_CHECKED_EXERCISES, OPENING, check_structure
from mdnet_utils.course.notebook import (CHECK, EXERCISE_HEADING, QUESTIONNAIRE, SOLUTION, STUB, cell_text,
                                         exercises, notebook_paths, opening, tags)
from mdnet_utils.course.runner import run_notebooks
from mdnet_utils.course.site import build_site
from mdnet_utils.course.student import build_student_edition, student_notebook
from mdnet_utils.course.translation import build_zh, sync_translation, translated_notebook, translation_problems

__all__ = ["notebook_paths", "cell_text", "tags", "opening", "exercises", "SOLUTION", "STUB", "CHECK",
           "QUESTIONNAIRE", "EXERCISE_HEADING", "check_structure", "OPENING", "CLOSING",
           "MIN_CHECKED_EXERCISES", "run_notebooks", "build_site", "build_student_edition", "student_notebook",
           "build_zh", "sync_translation", "translated_notebook", "translation_problems"]
