"""The round trip's dynamic circuits (mid-circuit measurement, reset, if/else on bits and
registers) and circuits with several classical registers, added to CIRCUITS."""

from __future__ import annotations

from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister

from tests.roundtrip.library import register

# --- dynamic circuits -----------------------------------------------------------------------


@register("dynamic_if")
def _dynamic_if() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.ry(1.1, 0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.x(1)
    qc.ry(0.4, 1)
    qc.measure(1, 1)
    return qc


@register("dynamic_if_else")
def _dynamic_if_else() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.ry(0.9, 0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)) as else_:
        qc.h(1)
        qc.cx(1, 2)
    with else_:
        qc.rx(2.2, 2)
    qc.measure([1, 2], [1, 2])
    return qc


@register("dynamic_if_zero")
def _dynamic_if_zero() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 0)):
        qc.ry(0.7, 1)
    qc.measure(1, 1)
    return qc


@register("dynamic_mid_measure_reuse")
def _dynamic_mid_measure_reuse() -> QuantumCircuit:
    qc = QuantumCircuit(2, 3)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure(0, 0)
    qc.ry(0.8, 0)
    qc.cx(0, 1)
    qc.measure(0, 1)
    qc.measure(1, 2)
    return qc


@register("dynamic_reset")
def _dynamic_reset() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.reset(0)
    qc.ry(0.5, 0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


@register("dynamic_conditional_measure")
def _dynamic_conditional_measure() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.ry(1.3, 0)
    qc.h(1)
    qc.measure(0, 0)
    with qc.if_test((qc.clbits[0], 1)):
        qc.measure(1, 1)
    return qc


@register("dynamic_register_condition")
def _dynamic_register_condition() -> QuantumCircuit:
    q = QuantumRegister(3, "q")
    flags = ClassicalRegister(2, "flags")
    out = ClassicalRegister(1, "out")
    qc = QuantumCircuit(q, flags, out)
    qc.h([0, 1])
    qc.measure([0, 1], flags)
    with qc.if_test((flags, 2)):
        qc.x(2)
    with qc.if_test((flags, 1)):
        qc.ry(1.0, 2)
    qc.measure(2, out[0])
    return qc


@register("dynamic_teleport")
def _dynamic_teleport() -> QuantumCircuit:
    q = QuantumRegister(3, "q")
    m0 = ClassicalRegister(1, "m0")
    m1 = ClassicalRegister(1, "m1")
    out = ClassicalRegister(1, "out")
    qc = QuantumCircuit(q, m0, m1, out)
    qc.u(1.2, 0.4, -0.3, 0)
    qc.h(1)
    qc.cx(1, 2)
    qc.cx(0, 1)
    qc.h(0)
    qc.measure(0, m0[0])
    qc.measure(1, m1[0])
    with qc.if_test((m1, 1)):
        qc.x(2)
    with qc.if_test((m0, 1)):
        qc.z(2)
    qc.measure(2, out[0])
    return qc


@register("dynamic_nested_if")
def _dynamic_nested_if() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.h([0, 1])
    qc.measure([0, 1], [0, 1])
    with qc.if_test((qc.clbits[0], 1)):
        with qc.if_test((qc.clbits[1], 1)):
            qc.x(2)
        qc.ry(0.3, 2)
    qc.measure(2, 2)
    return qc


@register("dynamic_reset_after_measure_gates")
def _dynamic_reset_after_measure() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.ry(1.0, 0)
    qc.cx(0, 1)
    qc.measure(1, 0)
    qc.reset(1)
    qc.h(1)
    qc.cx(1, 2)
    with qc.if_test((qc.clbits[0], 1)):
        qc.rz(0.9, 2)
        qc.h(2)
    qc.measure([1, 2], [1, 2])
    return qc


# --- several classical registers ------------------------------------------------------------


@register("registers_three")
def _registers_three() -> QuantumCircuit:
    q = QuantumRegister(4, "q")
    a = ClassicalRegister(1, "a")
    b = ClassicalRegister(2, "b")
    c = ClassicalRegister(1, "c")
    qc = QuantumCircuit(q, a, b, c)
    qc.ry(0.6, 0)
    qc.h(1)
    qc.cx(1, 2)
    qc.x(3)
    qc.measure(0, c[0])
    qc.measure([1, 2], [b[1], b[0]])
    qc.measure(3, a[0])
    return qc


@register("registers_unmeasured")
def _registers_unmeasured() -> QuantumCircuit:
    q = QuantumRegister(2, "q")
    spare = ClassicalRegister(2, "spare")
    res = ClassicalRegister(2, "res")
    qc = QuantumCircuit(q, spare, res)
    qc.h(0)
    qc.cry(1.4, 0, 1)
    qc.measure([0, 1], [res[1], res[0]])
    return qc


@register("registers_measure_all")
def _registers_measure_all() -> QuantumCircuit:
    qc = QuantumCircuit(3, 2)
    qc.h(0)
    qc.cx(0, 2)
    qc.rx(0.9, 1)
    qc.measure(0, 1)
    qc.measure_all()  # adds a 'meas' register after 'c'
    return qc


@register("registers_qubits_split")
def _registers_qubits_split() -> QuantumCircuit:
    a = QuantumRegister(2, "a")
    b = QuantumRegister(2, "b")
    ca = ClassicalRegister(2, "ca")
    cb = ClassicalRegister(2, "cb")
    qc = QuantumCircuit(b, a, cb, ca)
    qc.h(a[0])
    qc.cx(a[0], b[1])
    qc.ry(0.7, b[0])
    qc.cswap(b[0], a[1], a[0])
    qc.measure(a, ca)
    qc.measure(b, cb)
    return qc


@register("delay_and_barrier")
def _delay_and_barrier() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.delay(100, 0)
    qc.barrier()
    qc.delay(20, 1, unit="dt")
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc
