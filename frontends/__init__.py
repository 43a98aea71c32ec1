"""Importers from ONNX and TensorFlow SavedModel (issue orders 2 and 5). Each imports
`ember.ir` only."""
