# lit configuration for incnn.
import os
import shutil

import lit.formats

config.name = "incnn"
config.test_format = lit.formats.ShTest(not lit_config.isWindows)
config.suffixes = [".mlir", ".test"]
config.excludes = ["lit.cfg.py", "lit.site.cfg.py", "Inputs", "lint", "python"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.incnn_obj_root, "test")

# Every FileCheck run uses -enable-var-scope.
config.environment["FILECHECK_OPTS"] = "-enable-var-scope --allow-unused-prefixes=false"

path = [config.incnn_tools_dir, config.llvm_tools_dir, config.environment.get("PATH", "")]
config.environment["PATH"] = os.pathsep.join(path)
config.substitutions.append(("%incnn_src", config.incnn_src_root))
config.substitutions.append(("%incnn_obj_root", config.incnn_obj_root))
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%incnn_tools_dir", config.incnn_tools_dir))

shared = os.path.join(os.path.dirname(config.incnn_src_root), "shared")
if os.path.isdir(os.path.join(shared, "models", "stories260K")):
    config.available_features.add("shared-data")
config.substitutions.append(("%shared", shared))
if os.path.exists("/usr/bin/python3"):
    try:
        import subprocess
        subprocess.run(["/usr/bin/python3", "-c", "import torch"], check=True,
                       capture_output=True, timeout=120)
        config.available_features.add("torch")
    except Exception:
        pass
import shutil
if shutil.which("haproxy"):
    config.available_features.add("haproxy")
for tool in ["incnn-compile", "incnn-run", "incnn-bench", "incnn-serve"]:
    if os.path.exists(os.path.join(config.incnn_tools_dir, tool)):
        config.available_features.add(tool)
# The C API example (built beside the runtime).
embed_example = os.path.join(config.incnn_obj_root, "runtime", "incnn-embed-example")
if os.path.exists(embed_example):
    config.available_features.add("incnn-embed-example")
config.substitutions.append(("%incnn_embed_example", embed_example))
