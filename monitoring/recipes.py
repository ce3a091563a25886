"""Checking a training recipe (a skops file) without building anything from it. No Django, no scikit-learn here.

A skops file is a zip: `schema.json` describes a tree of nodes, each naming a loader and a Python type, and
`<id>.npy` members hold the arrays. skops itself only refuses types it does not trust by default and leaves
the rest to the caller; trusting a prefix such as `numpy.` lets a reduce or function node call `numpy.savetxt`.
So we decide ourselves, from the schema alone: every node's loader and type must be on the allow-lists below,
by full dotted name, and nothing that calls or names a function may appear at all. The zip's members are
measured from its directories before any member is read, and each array's header is matched against its
member's size, so whatever is later built from a recipe that passes is bounded by these caps.

`recipe_check` runs in the web request at upload; building and fitting happens only in the worker
(workers/training.py), which runs the same check again first.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass

from numpy.lib import format as npy_format


class RecipeError(ValueError):
    """A recipe that cannot be used safely. The message is user-facing."""


# The estimators retrain knows how to continue or refit (workers/retrain.py) and skl2onnx converts,
# with the preprocessing a pipeline may put before them.
ESTIMATORS: frozenset[str] = frozenset({
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.MinMaxScaler",
    "sklearn.preprocessing._data.MaxAbsScaler",
    "sklearn.preprocessing._data.RobustScaler",
    "sklearn.decomposition._pca.PCA",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.ExtraTreesClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.ExtraTreeClassifier",
})
# What those estimators hold once fitted: the MLP's optimiser and label binariser.
ESTIMATOR_INTERNALS: frozenset[str] = frozenset({
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.preprocessing._label.LabelBinarizer",
})
# numpy scalar types skops stores as arrays, and may name as a dict's key type.
NUMPY_SCALARS: frozenset[str] = frozenset(
    f"numpy.{name}" for name in ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
                                 "uint64", "uint32", "uint16", "uint8", "bool", "str_")
)
BUILTIN_SCALARS: frozenset[str] = frozenset(f"builtins.{name}" for name in ("str", "int", "float", "bool"))

# Loader → the types it may build. A loader absent here is refused whatever its type; that is every loader
# that calls something chosen by the file: FunctionNode, MethodNode, PartialNode, OperatorFuncNode,
# ReduceNode and ConstructorFromReduceNode, and the ones our estimators never need (sparse matrices, bytes,
# random generators, masked arrays, defaultdicts, slices). TreeNode is a reduce node whose constructor skops
# fixes to sklearn.tree._tree.Tree; the worker checks each tree's indices after loading.
ALLOWED: dict[str, frozenset[str]] = {
    "ObjectNode": ESTIMATORS | ESTIMATOR_INTERNALS,
    "TreeNode": frozenset({"sklearn.tree._tree.Tree"}),
    "DictNode": frozenset({"builtins.dict"}),
    "ListNode": frozenset({"builtins.list"}),
    "TupleNode": frozenset({"builtins.tuple"}),  # not a namedtuple: skops would call its class
    "JsonNode": BUILTIN_SCALARS,
    "TypeNode": BUILTIN_SCALARS | NUMPY_SCALARS,
    "NdArrayNode": frozenset({"numpy.ndarray"}) | NUMPY_SCALARS,
    "DTypeNode": frozenset({"numpy.dtype"}),
    "RandomStateNode": frozenset({"numpy.random.mtrand.RandomState"}),
}
ALL_ALLOWED_TYPES: frozenset[str] = frozenset().union(*ALLOWED.values())
# A node that points back at one already read: its type must be one we allow anywhere.
CACHED_LOADER = "CachedNode"
CALLING_LOADERS = frozenset({
    "FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode", "ReduceNode", "ConstructorFromReduceNode",
})
# The skops protocol we verified these rules against (skops 0.16). Older protocols use other loaders.
SKOPS_PROTOCOL = 2

# Caps. A 100-tree unpruned forest on 2,300 rows is 2.8 MB with 502 members and a 1.6 MB schema, so these
# leave room for large real recipes while bounding what a check or a load can cost.
MAX_RECIPE_BYTES = 200 * 1024 * 1024  # the upload's own cap (MAX_MODEL_UPLOAD_BYTES) is the same
MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 256 * 1024 * 1024
MAX_TOTAL_BYTES = 512 * 1024 * 1024  # everything inflated: the most a load can read into memory
MAX_SCHEMA_BYTES = 16 * 1024 * 1024  # parsed in the web request: ~10× this in Python objects
MAX_CENTRAL_DIRECTORY_BYTES = MAX_MEMBERS * (46 + 64)  # a fixed 46-byte entry plus a short name each
# Nodes nest about 10 deep in a forest or a pipeline; skops recurses per level, so keep far below Python's limit.
MAX_NODE_DEPTH = 48
MAX_NODES = 2_000_000
_ARRAY_MEMBER = re.compile(r"[0-9]{1,24}\.npy")
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = b"PK\x06\x07"


@dataclass(frozen=True)
class RecipeSummary:
    estimator: str  # the root's dotted type name, e.g. sklearn.pipeline.Pipeline
    types: tuple[str, ...]  # every type the recipe names, all on the allow-lists: what to pass skops as trusted
    n_members: int
    inflated_bytes: int


def recipe_check(data: bytes, *, max_bytes: int = MAX_RECIPE_BYTES) -> RecipeSummary:
    """Check a recipe's zip and schema against the caps and the allow-lists; build nothing.

    Raises RecipeError naming the first problem found.
    """
    if not data:
        raise RecipeError("The recipe file is empty.")
    if len(data) > max_bytes:
        raise RecipeError(f"The recipe is {len(data):,} bytes; the limit is {max_bytes:,}.")
    _check_end_record(data)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError):
        raise RecipeError("The recipe is not a skops file: it is not a zip archive.") from None
    with archive:
        infos = _check_members(archive)
        schema = _read_schema(archive, infos["schema.json"])
        types, files = _check_schema(schema)
        for name in sorted(files):
            if name not in infos:
                raise RecipeError(f"The recipe's schema refers to {name!r}, which the archive does not hold.")
            _check_array_member(archive, infos[name])
    return RecipeSummary(
        estimator=f"{schema['__module__']}.{schema['__class__']}",
        types=tuple(sorted(types)),
        n_members=len(infos),
        inflated_bytes=sum(info.file_size for info in infos.values()),
    )


def _check_end_record(data: bytes) -> None:
    """Bound the central directory before zipfile reads it: zipfile builds an object per entry it lists."""
    # The same search zipfile makes: an end record without a comment, else the last one in the final 64 KiB.
    start = len(data) - _EOCD.size
    if start < 0 or not (data[start:start + 4] == b"PK\x05\x06" and data[-2:] == b"\x00\x00"):
        start = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 65_535))
    if start < 0 or start + _EOCD.size > len(data):
        raise RecipeError("The recipe is not a skops file: it is not a zip archive.")
    _, disk, cd_disk, entries_here, entries, cd_size, _, _ = _EOCD.unpack_from(data, start)
    # A zip64 record would replace these counts with 64-bit ones; no recipe within our caps needs it.
    if start >= 20 and data[start - 20:start - 16] == _ZIP64_LOCATOR:
        raise RecipeError("The recipe is a zip64 archive; recipes must be plain zip files.")
    if disk or cd_disk or entries_here != entries:
        raise RecipeError("The recipe is a multi-part zip archive; recipes must be one plain zip file.")
    if entries > MAX_MEMBERS or cd_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise RecipeError(f"The recipe archive lists {entries:,} files; the limit is {MAX_MEMBERS:,}.")


def _check_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every member by name, after checking names and sizes as the archive declares them."""
    infos: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in archive.infolist():
        name = info.filename
        if name in infos:
            raise RecipeError(f"The recipe archive holds {name!r} twice.")
        if name != "schema.json" and not _ARRAY_MEMBER.fullmatch(name):
            # skops writes only the schema and numpy arrays for the estimators we allow: an .npz (scipy's
            # sparse format), a .zip or anything else is a nested archive or a payload we never read.
            raise RecipeError(
                f"The recipe archive holds {name!r}; a recipe holds only schema.json and .npy arrays "
                "(nested archives are refused)."
            )
        if info.flag_bits & 0x1:
            raise RecipeError(f"The recipe archive's member {name!r} is encrypted.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise RecipeError(f"The recipe archive's member {name!r} uses a compression other than deflate.")
        if info.file_size > MAX_MEMBER_BYTES or info.compress_size > MAX_MEMBER_BYTES:
            raise RecipeError(
                f"The recipe archive's member {name!r} inflates to {info.file_size:,} bytes; "
                f"the limit is {MAX_MEMBER_BYTES:,}."
            )
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise RecipeError(f"The recipe inflates to more than {MAX_TOTAL_BYTES:,} bytes; that is the limit.")
        infos[name] = info
    if "schema.json" not in infos:
        raise RecipeError("The recipe is not a skops file: it has no schema.json.")
    return infos


def _read_schema(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    if info.file_size > MAX_SCHEMA_BYTES:
        raise RecipeError(
            f"The recipe's schema.json is {info.file_size:,} bytes; the limit is {MAX_SCHEMA_BYTES:,}."
        )
    try:
        schema = json.loads(archive.read(info))
    except RecursionError:
        raise RecipeError("The recipe's schema.json nests too deeply.") from None
    except (ValueError, zipfile.BadZipFile, OSError, EOFError, zlib.error):
        raise RecipeError("The recipe is not a skops file: its schema.json cannot be read as JSON.") from None
    if not isinstance(schema, dict) or not isinstance(schema.get("__loader__"), str):
        raise RecipeError("The recipe is not a skops file: its schema.json does not describe an object.")
    protocol = schema.get("protocol")
    if protocol != SKOPS_PROTOCOL or isinstance(protocol, bool):
        raise RecipeError(
            f"The recipe was saved with skops protocol {protocol!r}; Watchkeeper reads protocol {SKOPS_PROTOCOL} "
            "(skops 0.16 or later). Save the estimator again with a current skops."
        )
    if schema["__loader__"] != "ObjectNode" or _dotted(schema) not in ESTIMATORS:
        raise RecipeError(
            f"The recipe holds a {_dotted(schema)}, not one of the estimators retraining supports: {_estimator_list()}."
        )
    return schema


def _check_schema(schema: dict) -> tuple[set[str], set[str]]:
    """Walk every node of the schema, nested ones included. Returns (types named, array members read)."""
    types: set[str] = set()
    files: set[str] = set()
    count = 0
    # (value, depth in nodes); iterative, so a deep file cannot exhaust our stack.
    stack: list[tuple[object, int]] = [(schema, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, list):
            stack.extend((item, depth) for item in value)
            continue
        if not isinstance(value, dict):
            continue
        if any(key in value for key in ("__loader__", "__class__", "__module__")):
            count += 1
            if count > MAX_NODES:
                raise RecipeError(f"The recipe has more than {MAX_NODES:,} nodes.")
            depth += 1
            if depth > MAX_NODE_DEPTH:
                raise RecipeError(f"The recipe nests objects more than {MAX_NODE_DEPTH} deep.")
            name = _check_node(value)
            types.add(name)
            if value.get("__loader__") == "ObjectNode" and name in ESTIMATORS:
                _check_estimator_params(name, value)
            if value.get("__loader__") == "NdArrayNode" and value.get("type") == "numpy":
                files.add(value.get("file"))
        stack.extend((child, depth) for child in value.values())
    return types, files


def _check_node(node: dict) -> str:
    loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
    if not all(isinstance(part, str) for part in (loader, module, cls)):
        raise RecipeError("The recipe's schema has a node without a loader, module and class.")
    name = f"{module}.{cls}"
    if loader in CALLING_LOADERS:
        raise RecipeError(
            f"The recipe calls {name} ({loader}); a recipe may hold only estimators and their data, never functions."
        )
    allowed = ALL_ALLOWED_TYPES if loader == CACHED_LOADER else ALLOWED.get(loader)
    if allowed is None:
        raise RecipeError(f"The recipe uses a {loader} for {name}, which recipes may not contain.")
    if name not in allowed:
        kind = "estimator" if loader == "ObjectNode" else "type"
        raise RecipeError(
            f"The recipe contains {name}, which is not an allowed {kind}. "
            f"Retraining supports: {_estimator_list()}."
        )
    if loader == "NdArrayNode" and node.get("type") not in ("numpy", "json"):
        raise RecipeError(f"The recipe stores an array as {node.get('type')!r}, which skops does not write.")
    if loader == "NdArrayNode" and node.get("type") == "numpy" and not isinstance(node.get("file"), str):
        raise RecipeError("The recipe's schema has an array without its file.")
    return name


# Hyperparameters that decide what a refit does outside the estimator: Pipeline.memory makes joblib write a
# cache where the file says and unpickle whatever it finds there; n_jobs starts processes. Sizes are capped so
# a refit cannot hold a worker for its whole time limit or exhaust its memory.
MAX_N_JOBS = 8
MAX_N_ESTIMATORS = 2_000
MAX_ITERATIONS = 100_000
MAX_HIDDEN_LAYERS = 16
MAX_LAYER_WIDTH = 4_096
_NOT_JSON = object()


def _json_value(node: object) -> object:
    """The value of a JsonNode, or _NOT_JSON for any other node."""
    if not isinstance(node, dict) or node.get("__loader__") != "JsonNode" or not isinstance(node.get("content"), str):
        return _NOT_JSON
    try:
        return json.loads(node["content"])
    except ValueError:
        return _NOT_JSON


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_estimator_params(name: str, node: dict) -> None:
    content = node.get("content")
    params = content.get("content") if isinstance(content, dict) and content.get("__loader__") == "DictNode" else None
    if not isinstance(params, dict):
        raise RecipeError(f"The recipe's {name} has no readable parameters.")
    short = name.rsplit(".", 1)[-1]
    if "memory" in params and _json_value(params["memory"]) is not None:
        raise RecipeError(f"The recipe's {short} sets memory (a cache directory); recipes must leave it None.")
    steps = params.get("steps")
    if steps is not None and (not isinstance(steps, dict) or steps.get("__loader__") != "ListNode"):
        raise RecipeError(f"The recipe's {short} keeps its steps in something other than a list.")
    if "n_jobs" in params:
        n_jobs = _json_value(params["n_jobs"])
        if n_jobs is not None and not _int_in(n_jobs, -MAX_N_JOBS, MAX_N_JOBS):
            raise RecipeError(f"The recipe's {short} sets n_jobs={n_jobs!r}; use None or at most {MAX_N_JOBS}.")
    for key, cap in (("n_estimators", MAX_N_ESTIMATORS), ("max_iter", MAX_ITERATIONS)):
        if key in params and not _int_in(_json_value(params[key]), 1, cap):
            raise RecipeError(f"The recipe's {short} sets {key} outside 1 to {cap:,}.")
    if "hidden_layer_sizes" in params:
        _check_layers(short, params["hidden_layer_sizes"])
    if "tree_" in params:
        _check_tree_width(short, params)


def _check_layers(short: str, node: object) -> None:
    single = _json_value(node)
    if single is not _NOT_JSON:
        widths = [single]
    elif isinstance(node, dict) and node.get("__loader__") in ("TupleNode", "ListNode") and isinstance(
        node.get("content"), list
    ):
        widths = [_json_value(item) for item in node["content"]]
    else:
        widths = [None]
    if not 1 <= len(widths) <= MAX_HIDDEN_LAYERS or not all(_int_in(w, 1, MAX_LAYER_WIDTH) for w in widths):
        raise RecipeError(
            f"The recipe's {short} has hidden layers outside 1 to {MAX_HIDDEN_LAYERS} layers of 1 to "
            f"{MAX_LAYER_WIDTH:,} units."
        )


def _check_tree_width(short: str, params: dict) -> None:
    """A tree's own n_features must be the estimator's: scikit-learn indexes rows by the tree's feature ids,
    checked (in the worker) only against the tree's n_features."""
    n_features = _json_value(params.get("n_features_in_"))
    tree = params["tree_"]
    reduce = tree.get("__reduce__") if isinstance(tree, dict) else None
    args = reduce.get("args") if isinstance(reduce, dict) else None
    items = args.get("content") if isinstance(args, dict) and args.get("__loader__") == "TupleNode" else None
    tree_features = _json_value(items[0]) if isinstance(items, list) and items else _NOT_JSON
    if not _int_in(n_features, 1, 10_000_000) or tree_features != n_features:
        raise RecipeError(f"The recipe's {short} holds a tree whose feature count does not match the estimator's.")


def _check_array_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """The header must declare exactly the bytes the member holds: numpy allocates what the header says."""
    try:
        with archive.open(info) as member:
            version = npy_format.read_magic(member)
            readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(version)
            shape, _, dtype = readers[version](member)
            header_bytes = member.tell()
    except (ValueError, TypeError, SyntaxError, zipfile.BadZipFile, OSError, EOFError, zlib.error):
        raise RecipeError(f"The recipe's array {info.filename!r} is not a numpy array file.") from None
    if dtype.hasobject:
        raise RecipeError(f"The recipe's array {info.filename!r} holds Python objects.")
    expected = math.prod(shape) * dtype.itemsize
    if header_bytes + expected != info.file_size:
        raise RecipeError(
            f"The recipe's array {info.filename!r} declares {expected:,} bytes of data but holds "
            f"{info.file_size - header_bytes:,}."
        )


def _dotted(node: dict) -> str:
    return f"{node.get('__module__')}.{node.get('__class__')}"


def _estimator_list() -> str:
    return ", ".join(sorted(name.rsplit(".", 1)[-1] for name in ESTIMATORS))

