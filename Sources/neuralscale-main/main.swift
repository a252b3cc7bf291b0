import NeuralScaleCommands

// The whole executable: the commands live in NeuralScaleCommands, where tests can run them.
NeuralScale.main()
