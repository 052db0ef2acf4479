"""The offline default answerer: whole sentences quoted from the passages, a short answer span
inside them, and abstention when the best sentence does not cover the question."""
