"""Datasets (generated, bundled or read from local files; nothing downloaded) and the training loop that reports
accuracy per epoch. Imports only ``search_space`` (to build a genome's model)."""
