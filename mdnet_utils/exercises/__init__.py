"""Exercises with automatic checks: ``check_<name>(your_function)`` runs your code on fixed cases and prints
a clear pass, or exactly what is wrong (which case, what was expected, what came back, and a hint when the
mistake is a known one). Each notebook's Exercises section states the task; its solution cell is marked
as a solution, and ``make student`` replaces it by a stub (see ``mdnet_utils.course.student``).

    from mdnet_utils.exercises import check_conclusion
    check_conclusion(my_conclusion)       # ✓ check_conclusion: passed (...)  or  ✗ check_conclusion: ...

``CHECKS`` maps each notebook (its two-digit number) to the names of its checks, in order.
"""
from mdnet_utils.exercises.core import CheckResult
from mdnet_utils.exercises.data import (check_annotation_entry, check_conclusion, check_pad_reports,
                                        check_patient_split)
from mdnet_utils.exercises.heads import (check_cam, check_concat_forward, check_decoupled_scores,
                                         check_literal_channels, check_logits_from_cam, check_split_linear)
from mdnet_utils.exercises.reports import (check_cam_attention, check_cam_prior, check_context, check_mass_inside,
                                           check_pointing_game, check_report_log_likelihood)
from mdnet_utils.exercises.resnet import (check_conv_output_size, check_gradient_split, check_paths_by_length,
                                          check_preact_forward)

CHECKS: dict[str, tuple[str, ...]] = {
    "00": ("check_conclusion", "check_pad_reports"),
    "01": ("check_preact_forward", "check_conv_output_size"),
    "02": ("check_paths_by_length", "check_gradient_split"),
    "03": ("check_cam", "check_logits_from_cam"),
    "04": ("check_decoupled_scores", "check_split_linear"),
    "05": ("check_concat_forward", "check_literal_channels"),
    "06": ("check_report_log_likelihood", "check_context", "check_cam_attention"),
    "07": ("check_mass_inside", "check_pointing_game", "check_cam_prior"),
    "08": ("check_annotation_entry", "check_patient_split"),
}

__all__ = ["CHECKS", "CheckResult"] + [name for names in CHECKS.values() for name in names]
