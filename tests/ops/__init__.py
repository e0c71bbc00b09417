"""Operations: the stack, nginx, the CLI."""
