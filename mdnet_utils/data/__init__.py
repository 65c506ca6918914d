"""The synthetic BCIDR stand-in and the loader that reads it (and real data in the same layout).

* ``grades``: the features, grades, conclusions and the rule between them;
* ``synthetic``: the tile renderer;  ``reports``: the report grammar and its parser;
* ``build``: ``make_synthetic_dataset``, the deterministic, atomic, cached build on disk;
* ``dataset``: ``ReportDataset``, ``collate``, ``DatasetError``;  ``vocab``: tokenizer and vocabulary.
* ``adapters``: ``detect_layout``, ``convert_bcidr`` (the authors' BCIDR/NMI layout in), ``export_r2gen`` (R2Gen out).
"""
from mdnet_utils.data.adapters import convert_bcidr, convert_bcidr_folder, detect_layout, export_r2gen
from mdnet_utils.data.build import make_synthetic_dataset
from mdnet_utils.data.dataset import DatasetError, ReportDataset, build_vocab, collate, read_annotation
from mdnet_utils.data.grades import CLASSES, FEATURES, GRADES, conclusion
from mdnet_utils.data.vocab import Vocabulary, detokenize, tokenize

__all__ = ["make_synthetic_dataset", "ReportDataset", "DatasetError", "collate", "build_vocab",
           "read_annotation", "Vocabulary", "tokenize", "detokenize", "CLASSES", "FEATURES",
           "GRADES", "conclusion"]
__all__ += ["detect_layout", "convert_bcidr", "convert_bcidr_folder", "export_r2gen"]
