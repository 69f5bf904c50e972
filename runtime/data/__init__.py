"""The public safety datasets and their splits: one registry, one loader per dataset, typed
records. Training (the guard, the judges, Goodtriever's datastores) and evaluation both read
through here, so they agree on what is held out.

    from specguard.data import load
    prompts = load("xstest")                      # list[XSTestRecord]
    behaviours = load("advbench", subset="harmful_behaviors")

The data directory is the `data_dir_override` argument, else $SPECGUARD_DATA_DIR, else
../shared/data. Users' own files load with `load_custom("my_dataset.yaml")`.
"""

from . import _answer_sets, _builtin, _prompt_sets  # noqa: F401  (register the built-in datasets)
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
    AnswerRecord,
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
from ._dedupe import build_manifest, is_excluded, manifest_status, record_key, write_manifest
from ._splits import (
    HELD_OUT_SHARE,
    MULTILINGUAL_NEAR_DUPLICATE_COSINE,
    NEAR_DUPLICATE_COSINE,
    VALIDATION_SHARE,
    NearDuplicate,
    Part,
    drop_near_duplicates,
    group_of,
    held_out,
    in_part,
    part_of,
    record_part,
)
from ._registry import DatasetSpec, dataset_names, get_spec, load, load_from_hub, register

__all__ = [
    "HELD_OUT_SHARE",
    "MULTILINGUAL_NEAR_DUPLICATE_COSINE",
    "NEAR_DUPLICATE_COSINE",
    "VALIDATION_SHARE",
    "NearDuplicate",
    "Part",
    "JAILBREAK_SLOT",
    "JIGSAW_LABELS",
    "MODERATION_CATEGORIES",
    "RTP_ATTRIBUTES",
    "AdvBenchRecord",
    "AnswerRecord",
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
    "build_manifest",
    "dataset_names",
    "is_excluded",
    "manifest_status",
    "record_key",
    "write_manifest",
    "get_spec",
    "drop_near_duplicates",
    "group_of",
    "held_out",
    "in_part",
    "part_of",
    "record_part",
    "load",
    "load_custom",
    "load_from_hub",
    "read_mapping",
    "register",
    "wrap",
]
