import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    """Read ``__version__`` from daphne/__init__.py without importing it."""
    with open(os.path.join(HERE, "daphne", "__init__.py"), encoding="utf-8") as fh:
        match = re.search(
            r"""^__version__\s*=\s*['"]([^'"]+)['"]""", fh.read(), re.MULTILINE
        )
    if not match:
        raise RuntimeError("Cannot find __version__ in daphne/__init__.py")
    return match.group(1)


def read_long_description():
    with open(os.path.join(HERE, "README.rst"), encoding="utf-8") as fh:
        return fh.read()


setup(
    name="daphne",
    version=read_version(),
    description="HTTP protocol server for ASGI applications, built on Twisted",
    long_description=read_long_description(),
    long_description_content_type="text/x-rst",
    license="BSD-3-Clause",
    python_requires=">=3.10",
    # daphne/twisted/plugins holds a Twisted plugin module. Twisted discovers
    # plugins only in twisted/plugins directories, so installs put it there.
    # (Editable installs do not: daphne handles fd: endpoints itself.)
    packages=find_packages(
        exclude=[
            "tests",
            "tests.*",
            "examples",
            "examples.*",
            "benchmarks",
            "benchmarks.*",
            "conformance",
            "conformance.*",
        ]
    )
    + ["twisted.plugins"],
    package_dir={"twisted.plugins": "daphne/twisted/plugins"},
    include_package_data=True,
    zip_safe=False,
    install_requires=[
        # Bounded: daphne/protocols/direct.py and daphne/websocket/engine_*.py
        # read internals of these; raise the bounds once the tests that
        # name those internals pass on a new release.
        "twisted[tls]>=22.4,<27",
        # (26.11: the first tested release that hands a compressed frame's
        # remaining message budget to the codec and closes with 1009 when it
        # is exceeded: daphne/websocket/deflate.py relies on both.)
        "autobahn>=26.11,<27",
        # The default WebSocket engine, daphne/websocket/engine_websockets.py,
        # hooks into its sans-IO Protocol (recv_frame, send_frame, fail, the
        # parser and its reader) and PerMessageDeflate: tested on 17.x.
        "websockets>=17,<18",
        "asgiref>=3.7,<4",
        "httptools>=0.6",
        # HTTP/2 framing, driven sans-IO by daphne/protocols/http2.py (which
        # relies on its event classes and flow-control API: bounded).
        "h2>=4.1,<5",
        "uvloop>=0.17; sys_platform != 'win32'"
        " and platform_python_implementation == 'CPython'",
    ],
    extras_require={
        # --reload: file watching (a development tool, never needed to serve).
        "reload": ["watchfiles>=0.21,<2"],
        # Channel-layer mode across machines: daphne.layers.redis_direct
        # reads channels_redis's storage, so only checked releases.
        "redis": ["channels_redis>=4.3,<4.4", "redis>=5,<7"],
        "tests": [
            "pytest",
            "pytest-timeout",
            "hypothesis",
            "httpx[http2]",
            "django",
            "ruff",
            "websockets",
            # The Autobahn TestSuite runner (tests/test_autobahn.py).
            "kosoku>=0.1,<0.2",
            "channels>=4,<5",
            # daphne.layers.redis reads channels_redis's storage (its keys,
            # sorted sets and serializer): raise the bound once
            # tests/test_channels_redis.py passes on a new release.
            "channels_redis>=4.3,<4.4",
            "redis>=5,<7",
            "watchfiles>=0.21,<2",
        ],
    },
    entry_points={
        "console_scripts": [
            # (Not daphne.cli: it imports Twisted, which takes the systemd
            # socket activation variables out of the environment.)
            "daphne = daphne.__main__:main",
            # Channel-layer mode: runs an application behind the layer.
            "daphne-worker = daphne.worker:main",
        ],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Environment :: Web Environment",
        "Framework :: Twisted",
        "Intended Audience :: Developers",
        "License :: OSI Approved :: BSD License",
        "Operating System :: OS Independent",
        "Programming Language :: Python",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Internet :: WWW/HTTP",
    ],
)
