"""Data stage: the COMICS layout (``comics``), panel datasets (``datasets``, ``decode``), statistics (``stats``),
the synthetic comics generator (``synthetic``), the frozen-feature cache (``features``) and the shared
conventions (``pixels``, ``shuffle``, ``boxes``). Import from the submodules; nothing is loaded here, so that
reading annotation files needs no torch."""
