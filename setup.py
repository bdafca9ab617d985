"""Packaging for twistbridge.

The twistd plugin lives in ``twisted/plugins/`` which is a namespace shared
with Twisted itself: it must ship as a plain data file of the ``twisted.plugins``
package and that directory must never get an ``__init__.py`` of ours.
"""

from setuptools import find_packages, setup

setup(
    name="twistbridge",
    version="0.1.0",
    description=(
        "One Twisted reactor serving izzati uploads, Igor WebSocket streams, "
        "JSON-RPC 2.0 and bgpy tasks"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["twistbridge", "twistbridge.*"])
    + ["twisted.plugins"],
    package_data={
        "twisted.plugins": ["twistbridge_plugin.py"],
        "twistbridge": ["static/*"],
    },
    include_package_data=False,
    install_requires=[
        # 24.7.0 fixes HTTP request smuggling / pipelining CVEs.
        "Twisted>=24.7.0",
        "autobahn>=23.1.2",
        "txjsonrpc-ng>=0.9.2",
        "multipart>=1.2.1",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "pytest-twisted>=1.14.1",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "izzati>=1.2.3",
            "bgpy>=0.3.1",
            "websocket-client>=1.8",
            "jsonrpcclient>=4.0",
            "requests>=2.32",
            "selenium>=4.20",
        ],
        "docs": ["sphinx>=7.0"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
    ],
)
