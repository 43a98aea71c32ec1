"""Engine loading and execution through cuda-python (issue order 4). Imports `ember.ir`
only, so an engine runs without the compiler."""
