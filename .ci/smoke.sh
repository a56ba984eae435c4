#!/usr/bin/env bash
# What a new user does with an installed fgmm, in the current folder (run by .ci/smoke_wheel.sh in a
# fresh virtual environment outside the checkout). Needs `fgmm` and `python` of that environment on
# PATH, FGMM_REPO (the checkout: only tests/tiny_cub.py is read from it, to write a tiny CUB tree).
set -euo pipefail
say() { echo "-- $*"; }

say "fgmm is the installed one, not the checkout's"
python - <<'PY'
import os, fgmm
from importlib.metadata import version
assert "site-packages" in fgmm.__file__ and not fgmm.__file__.startswith(os.environ["FGMM_REPO"]), fgmm.__file__
assert version("fgmm") == fgmm.__version__
print("fgmm", fgmm.__version__, "from", os.path.dirname(fgmm.__file__))
PY
fgmm --version
fgmm --help >/dev/null

say "shipped package data: knowledge files and example configs"
python -c "from fgmm.resources import knowledge_file, example_config, example_configs as names; \
print(knowledge_file('shapes.ttl')); assert names(); print([example_config(n).name for n in names()])"

say "author and validate a knowledge graph (SHACL shapes shipped in the wheel)"
fgmm kg new birds.ttl --title "smoke birds"
fgmm kg add-class birds.ttl Setophaga --rank genus
fgmm kg add-class birds.ttl Yellow_Warbler --parent Setophaga --rank species
fgmm kg add-attribute birds.ttl has_breast_pattern::striped --group has_breast_pattern --part breast
fgmm kg link birds.ttl Yellow_Warbler has_breast_pattern::striped 0.8
fgmm kg validate birds.ttl

say "a tiny CUB-200-2011 tree: data check, import-cub (shipped taxonomy), validate"
python "$FGMM_REPO/tests/tiny_cub.py" cub200 --real-names
fgmm data check cub200 --shallow
fgmm kg import-cub cub200 --out cub.ttl
fgmm kg validate cub.ttl

say "train and evaluate on the procedural set; a shipped example config by name"
fgmm data generate --out proc --classes 4 --images 6 --unseen 0 --noise 0 --no-audio
fgmm train -c cub_image --data proc --vision efficientnet_lite0 --epochs 3 --out run
fgmm evaluate run --json > eval.json
python -c "import json; m = json.load(open('eval.json')); assert 0 <= m['top1'] <= 1, m"
test -f run/eval.json

say "predict with the trained model (issue 10: fgmm predict)"
fgmm predict run proc/images/000-000.jpg -k 2 --json > predict.json
python -c "import json; r = json.load(open('predict.json')); assert len(r) == 1 and len(r[0]['top']) == 2, r"

say "retrieval: index a folder of images, query it with an image"
fgmm index build --images proc/images --vision efficientnet_lite0 --out photo-index
fgmm retrieve photo-index --image proc/images/000-000.jpg -k 3 --json > hits.json
python -c "import json; r = json.load(open('hits.json'))['results']; assert len(r) == 3 and r[0]['score'] > 0.99, r"
say "retrieval in the trained model's space (index build --model on the run folder)"
fgmm index build --images proc/images --model run --out model-index
fgmm retrieve model-index --image proc/images/000-000.jpg -k 3 --json > model-hits.json
python -c "import json; r = json.load(open('model-hits.json'))['results']; assert len(r) == 3, r"
say "smoke test passed"
