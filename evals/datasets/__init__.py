"""Datasets for offline evaluation: one registry, one loader per public dataset, typed records.

    from specguard.evals.datasets import load
    prompts = load("xstest")                      # list[XSTestRecord]
    behaviours = load("advbench", subset="harmful_behaviors")

The data directory is the `data_dir_override` argument, else $SPECGUARD_DATA_DIR, else
../shared/data. Users' own files load with `load_custom("my_dataset.yaml")`.
"""

from . import _builtin  # noqa: F401  (registers the built-in datasets)
from ._builtin import (
    JAILBREAK_SLOT,
    JIGSAW_LABELS,
    MODERATION_CATEGORIES,
    RTP_ATTRIBUTES,
    wrap,
)
from ._custom import CustomDataset, load_custom, read_mapping
from ._files import DatasetError
from ._records import (
    AdvBenchRecord,
    BeaverTailsRecord,
    CustomRecord,
    HarmBenchRecord,
    JailbreakTemplate,
    JBBRecord,
    JigsawRecord,
    ModerationRecord,
    RealToxicityRecord,
    Record,
    SimpleSafetyRecord,
    ToxicChatRecord,
    USafeBenchRecord,
    XSTestRecord,
)
from ._splits import HELD_OUT_SHARE, held_out
from ._registry import DatasetSpec, dataset_names, get_spec, load, load_from_hub, register

__all__ = [
    "HELD_OUT_SHARE",
    "JAILBREAK_SLOT",
    "JIGSAW_LABELS",
    "MODERATION_CATEGORIES",
    "RTP_ATTRIBUTES",
    "AdvBenchRecord",
    "BeaverTailsRecord",
    "CustomDataset",
    "CustomRecord",
    "DatasetError",
    "DatasetSpec",
    "HarmBenchRecord",
    "JBBRecord",
    "JailbreakTemplate",
    "JigsawRecord",
    "ModerationRecord",
    "RealToxicityRecord",
    "Record",
    "SimpleSafetyRecord",
    "ToxicChatRecord",
    "USafeBenchRecord",
    "XSTestRecord",
    "dataset_names",
    "get_spec",
    "held_out",
    "load",
    "load_custom",
    "load_from_hub",
    "read_mapping",
    "register",
    "wrap",
]
