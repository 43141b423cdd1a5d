from setuptools import find_namespace_packages, setup

setup(
    name="neuropilot_pipeline",
    version="0.1.0",
    description="Autonomous tuning of autoscaler thresholds from service telemetry, as a Dagster code location.",
    # Namespace discovery also ships the data folders (the bundled trace, the demo's tfvars).
    packages=find_namespace_packages(include=["neuropilot_pipeline", "neuropilot_pipeline.*"]),
    package_data={"neuropilot_pipeline.data.traces": ["*"], "neuropilot_pipeline.data.demo_infra": ["*"]},
    python_requires=">=3.10",
    install_requires=[
        "dagster==1.13.*",
        "dagster-webserver==1.13.*",
        "dagster-postgres==0.29.*",
        "pandas>=2.2",
        "numpy>=1.26",
        "scikit-learn>=1.5",
        "statsmodels>=0.14",
        "pyarrow>=16",
        "duckdb>=1.1",
        "requests>=2.32",
        "notion-client>=2.2",
        "python-hcl2>=5",
        # Round-trip YAML: ops_config.yaml is edited in place with its comments kept.
        "ruamel.yaml>=0.18",
        "matplotlib>=3.8",
        # Markdown -> HTML for the daily report page (also a Dagster dependency).
        "markdown-it-py>=3",
        # The streaming detectors are a per-point recursion; numba compiles it (270k points/s
        # on one core instead of ~5k with numpy per step) without a second implementation.
        "numba>=0.60",
        # One BLAS/OpenMP thread per worker process (core/parallel.py); scikit-learn's own dependency.
        "threadpoolctl>=3.1",
    ],
    extras_require={
        # moto's server speaks the S3 REST API on localhost: the object-storage tests run the
        # warehouse through pyarrow's real S3 client against it (no AWS account, no network).
        "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3", "moto[server]>=5.0"],
        # benchmarks/detect.py: the peers, river (online detectors) and stumpy (matrix profile).
        "bench": ["river>=0.26", "stumpy>=1.13"],
    },
    entry_points={"console_scripts": ["neuropilot=neuropilot_pipeline.cli:main"]},
)
