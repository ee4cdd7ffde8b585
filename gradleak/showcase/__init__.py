"""What ``gradleak demo`` and ``gradleak claims`` run: the whole story on embedded data, and the
seed's claims measured with stated verdict rules."""
