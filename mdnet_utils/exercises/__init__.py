"""Exercises with automatic checks: ``check_<name>(your_function)`` runs your code on fixed cases and prints
a clear pass, or exactly what is wrong (which case, what was expected, what came back, and a hint when the
mistake is a known one). Each notebook's Exercises section states the task; its solution cell is marked
as a solution, and ``make student`` replaces it by a stub (see ``mdnet_utils.course.student``).

    from mdnet_utils.exercises import check_conclusion
    check_conclusion(my_conclusion)       # ✓ check_conclusion: passed (...)  or  ✗ check_conclusion: ...

``CHECKS`` maps each notebook (its two-digit number) to the names of its checks, in order.
"""
from mdnet_utils.exercises.core import CheckResult
from mdnet_utils.exercises.data import (check_conclusion, check_patient_split, check_process_share,
                                        check_training_vocabulary)
from mdnet_utils.exercises.heads import (check_cam, check_concat_forward, check_decoupled_scores, check_eq9_head,
                                         check_literal_channels, check_member_scores)
from mdnet_utils.exercises.reports import (check_beam_search, check_cam_prior, check_decoder_step, check_mass_inside,
                                           check_pointing_game, check_report_log_likelihood)
from mdnet_utils.exercises.resnet import (check_clipped_step, check_gradient_split, check_lesion_accuracy,
                                          check_paths_by_length, check_preact_forward)

CHECKS: dict[str, tuple[str, ...]] = {
    "00": ("check_conclusion", "check_training_vocabulary"),
    "01": ("check_preact_forward", "check_clipped_step"),
    "02": ("check_paths_by_length", "check_gradient_split", "check_lesion_accuracy"),
    "03": ("check_cam", "check_member_scores"),
    "04": ("check_decoupled_scores", "check_eq9_head"),
    "05": ("check_concat_forward", "check_literal_channels"),
    "06": ("check_report_log_likelihood", "check_decoder_step", "check_beam_search"),
    "07": ("check_mass_inside", "check_pointing_game", "check_cam_prior"),
    "08": ("check_patient_split", "check_process_share"),
}

__all__ = ["CHECKS", "CheckResult"] + [name for names in CHECKS.values() for name in names]
