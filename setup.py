"""tb_xai: attributions logged while a Keras model trains, and a TensorBoard plugin to watch them evolve."""

import setuptools

setuptools.setup(
    name="tb_xai",
    version="0.1.0",
    description="Watch why your Keras model predicts what it predicts, epoch by epoch, in TensorBoard.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Framework :: TensorFlow",
        "Intended Audience :: Developers",
        "Intended Audience :: Science/Research",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Visualization",
    ],
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["tb_xai", "tb_xai.*"]),
    package_data={"tb_xai": ["plugin_data.proto", "plugin/static/*"]},
    install_requires=[
        "keras>=3.0",
        "tensorboard>=2.16",
        "protobuf>=6.30",
        "numpy>=1.24",
        "shap>=0.44",
        "lime>=0.2.0.1",
        "matplotlib>=3.7",
        # Already required by shap and lime; named because tb_xai imports them itself: SLIC superpixels
        # (scikit-image), k-means backgrounds (scikit-learn), binomial coefficients of the Shapley kernel (scipy),
        # one BLAS thread for the surrogates' least-squares fits (threadpoolctl).
        "scikit-image>=0.21",
        "scikit-learn>=1.2",
        "scipy>=1.10",
        "threadpoolctl>=3",
        # CRC-32C of the event files' records, written and read (tb_xai.event_records): Google's C implementation,
        # about 100x faster than the pure-Python checksum TensorBoard's own writer uses.
        "google-crc32c>=1.5",
    ],
    # Every Keras backend is an extra, none a requirement: Keras 3 runs on whichever is installed
    # (KERAS_BACKEND). TensorFlow's GPU build (`tensorflow`) and CPU build (`tensorflow-cpu`) are different
    # distributions, and requiring one would install it beside the other. PyTorch's package index build is the
    # CUDA one; install PyTorch's CPU build first where no GPU is wanted, and this extra keeps it.
    extras_require={
        "tensorflow": ["tensorflow>=2.16"],
        "cpu": ["tensorflow-cpu>=2.16"],
        "tf_keras": ["tf_keras>=2.16"],
        "jax": ["jax>=0.4.20"],
        "torch": ["torch>=2.1"],
        "test": ["pytest>=7", "pytest-timeout>=2", "pytest-xdist>=3", "pandas>=2"],
    },
    entry_points={
        # The TensorBoard plugin (tb_xai.plugin) registers itself here.
        "tensorboard_plugins": ["tb_xai = tb_xai.plugin.loader:XaiLoader"],
    },
)
