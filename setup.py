from pathlib import Path

from setuptools import find_packages, setup

about: dict = {}
exec((Path(__file__).parent / "sparsecheck" / "_version.py").read_text(), about)

setup(
    name="sparsecheck",
    version=about["__version__"],
    description="Debug PyTorch classifiers through a sparse decision layer: features, assertions, "
    "slices, spurious findings, MLflow.",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sparsecheck", "sparsecheck.*"]),
    include_package_data=True,
    package_data={"sparsecheck": ["py.typed", "reports/templates/*", "schema/*.json", "text/demo_data/*"]},
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "glm_saga>=0.1.2",
        "lime>=0.2.0.1",
        "pandera>=0.20",
        "mlflow>=2.12",
        "scikit-learn>=1.3",
        "scikit-image>=0.21",
        "scipy>=1.10",
        "numba>=0.59",  # the sparse path's (class, feature) kernels on CPU
        "numpy>=1.24",
        "pandas>=2.0",
        "pyarrow>=14",
        "pydantic>=2.5",
        "pyyaml>=6",
        "typer>=0.12",
        "rich>=13",
        "tqdm>=4.66",
        "matplotlib>=3.7",
        "jinja2>=3.1",
    ],
    extras_require={
        "timm": ["timm>=0.9"],
        "huggingface": ["transformers>=4.40", "safetensors>=0.4"],
        # text classifiers (data.modality: text, sparsecheck demo --text): models and tokenisers,
        # datasets directories, word clouds
        "text": ["transformers>=4.40", "tokenizers>=0.15", "safetensors>=0.4", "datasets>=2.14", "wordcloud>=1.9"],
        # the conformance suite loads a timm model and a Hugging Face directory, so tests need both
        # bench/scaling.py's reference: glmnet's multinomial path (Fortran coordinate descent)
        "bench": ["python-glmnet>=2.6"],
        # the documentation site is built (mkdocs build --strict) by tests/test_docs.py
        "test": ["pytest>=8", "hypothesis>=6.100", "selenium>=4.20", "sliceline>=0.2", "jsonschema>=4", "timm>=0.9",
                 "transformers>=4.40", "tokenizers>=0.15", "safetensors>=0.4", "datasets>=2.14", "wordcloud>=1.9",
                 "mkdocs>=1.6", "mkdocs-material>=9.5",
                 "mkdocstrings[python]>=0.26"],
    },
    entry_points={"console_scripts": ["sparsecheck=sparsecheck.cli:main"],
                  # mlflow.models.evaluate(..., evaluators=["sparsecheck"])
                  "mlflow.model_evaluator": ["sparsecheck=sparsecheck.tracking.evaluator:SparsecheckEvaluator"]},
)
