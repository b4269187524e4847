"""Which files the wheel carries; everything else about the package is in pyproject.toml.

The default map layers (`layers/`) and the demo city (`shapefiles/demo/`) live at the top of
the repository, where a city's GIS team looks for them, yet an installed service needs them
too: they are mapped into the wheel as `geo_service/builtin_layers` and
`geo_service/demo_city` (see `geo_service/packaged.py`, which finds them either way).
pyproject.toml cannot map a folder outside the package while discovering packages, hence
this file.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["geo_service*", "web_map*"], exclude=["*.__pycache__"]),
        "geo_service.builtin_layers",
        "geo_service.demo_city",
    ],
    package_dir={
        "geo_service.builtin_layers": "layers",
        "geo_service.demo_city": "shapefiles/demo",
    },
    package_data={
        "geo_service": ["**/*.sql", "db/migrations/*.ini", "db/migrations/*.mako", "**/*.toml"],
        "geo_service.builtin_layers": ["*.toml"],
        "geo_service.demo_city": ["*.shp", "*.shx", "*.dbf", "*.prj", "*.cpg", "*.csv"],
        "web_map": [
            "static/*.js",
            "static/*.css",
            "static/*.png",
            "static/*.ico",
            "static/*.json",
            "static/vendor/**/*",
        ],
    },
)
