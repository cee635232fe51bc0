"""Plain torch building blocks, free of Lightning: encoders, decoders, losses."""
