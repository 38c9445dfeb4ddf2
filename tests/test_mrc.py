"""Reading MRC micrographs: every supported mode and layout, and every kind of bad file."""

from __future__ import annotations

import struct
import time
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from mrcfile import dtypes as mrc_dtypes

from cryostream.errors import CryostreamError, InvalidMicrographError
from cryostream.io.mrc import read_header, read_rows, write_micrograph
from tests.conftest import write_mrc

SHAPE = (37, 29)


def _values(dtype: str, rng: np.random.Generator) -> np.ndarray:
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        return rng.integers(info.min, info.max, size=SHAPE, endpoint=True).astype(dtype)
    return rng.normal(0, 100, size=SHAPE).astype(dtype)


@pytest.mark.parametrize(
    "dtype, mode", [("int8", 0), ("int16", 1), ("float32", 2), ("uint16", 6), ("float16", 12)]
)
@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_modes_and_byte_orders_read_as_float32(tmp_path, rng, dtype, mode, byte_order):
    data = _values(dtype, rng).astype(np.dtype(dtype).newbyteorder(byte_order))
    path = write_mrc(tmp_path / "a.mrc", data)
    header = read_header(path)
    assert header.mode == mode and header.shape == SHAPE
    assert np.dtype(header.dtype).byteorder in ("|", byte_order, "=")
    expected = data.astype(np.float32)
    got = read_rows(header, 0, SHAPE[0])
    assert got.dtype == np.float32 and got.dtype.isnative
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(read_rows(header, 5, 17), expected[5:17])


def test_mode_0_bytes_are_unsigned_where_imod_says_so(tmp_path, rng):
    """IMOD writes mode 0 as unsigned bytes and marks the signed ones (its stamp in header word
    39, flag bit 0 in word 40): with the stamp and the bit clear, 200 reads as 200, not −56;
    with the bit set, or without the stamp (MRC2014), the bytes are signed."""
    data = rng.integers(0, 255, size=SHAPE, endpoint=True).astype(np.uint8)
    path = write_mrc(tmp_path / "imod.mrc", data.view(np.int8))
    signed = data.view(np.int8).astype(np.float32)
    assert signed.min() < 0 and np.array_equal(read_rows(read_header(path), 0, SHAPE[0]), signed)
    with mrcfile.open(path, header_only=True) as m:
        order = m.header.mode.dtype.byteorder
    for flags, expected in ((0, data.astype(np.float32)), (1, signed)):
        with open(path, "r+b") as f:
            f.seek(152)
            f.write(np.array([1146047817, flags], np.dtype("i4").newbyteorder(order)).tobytes())
        np.testing.assert_array_equal(read_rows(read_header(path), 0, SHAPE[0]), expected)


def test_single_section_volume_header_is_one_micrograph(tmp_path, rng):
    data = rng.normal(size=(1, *SHAPE)).astype(np.float32)
    path = write_mrc(tmp_path / "v.mrc", data)
    with mrcfile.open(path, header_only=True) as m:
        assert int(m.header.ispg) == 1  # mrcfile reads this back as (1, ny, nx)
    np.testing.assert_array_equal(read_rows(read_header(path), 0, SHAPE[0]), data[0])


@pytest.mark.parametrize("exttyp", [b"FEI1", b"FEI2"])
def test_extended_headers_are_skipped(tmp_path, rng, exttyp):
    data = rng.normal(size=SHAPE).astype(np.float32)
    path = tmp_path / "epu.mrc"
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.set_extended_header(np.zeros(3, dtype=mrc_dtypes.get_ext_header_dtype(exttyp)))
        m.header.exttyp = exttyp
        m.voxel_size = 0.6666
    header = read_header(path)
    assert header.extended_header_type == exttyp.decode()
    assert header.extended_header_bytes > 0
    assert header.data_offset == 1024 + header.extended_header_bytes
    np.testing.assert_array_equal(read_rows(header, 0, SHAPE[0]), data)


def test_real_epu_micrograph_when_present():
    real = Path(__file__).resolve().parents[2] / "shared/data/real/epu2.9_example.mrc"
    if not real.exists():
        pytest.skip("the real EPU micrograph is not beside this checkout")
    header = read_header(real)
    assert header.extended_header_type == "FEI2" and header.mode == 6
    # its FEI2 record: 300 kV, and the MRC header's 0.6666 Å pixel (so no warning of two)
    assert header.voltage_kv == 300.0 and header.pixel_size_from == "MRC header"
    assert header.pixel_size_angstrom == header.epu_pixel_size_angstrom == pytest.approx(0.666551)
    with mrcfile.open(real) as m:
        expected = np.asarray(m.data[1000:1010], dtype=np.float32)
    np.testing.assert_array_equal(read_rows(header, 1000, 1010), expected)


def test_pixel_size_comes_from_the_header(tmp_path):
    path = write_mrc(tmp_path / "a.mrc", np.zeros(SHAPE, np.float32), pixel_size=0.6575)
    assert read_header(path).pixel_size_angstrom == pytest.approx(0.6575)


def test_write_micrograph_is_atomic_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "out.mrc"
    write_micrograph(path, np.ones(SHAPE), 0.66, history="hello")
    assert not list(tmp_path.glob(".*partial"))
    with mrcfile.open(path) as m:
        assert m.data.dtype == np.float32
        assert any("hello" in label for label in m.get_labels())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_micrograph(path, np.ones(SHAPE), 0.66)


def test_large_values_get_a_finite_rms_and_no_overflow_warning(tmp_path):
    """mrcfile's header rms is a float32 sum of squares: values of 1e20 and more overflowed
    to an infinite rms and printed NumPy's overflow warning to the user."""
    data = np.full(SHAPE, 1e25, np.float32)
    data[::2] = 3e25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_micrograph(tmp_path / "a.mrc", data, 0.66)
    with mrcfile.open(tmp_path / "a.mrc") as m:
        assert float(m.header.rms) == pytest.approx(data.std(dtype=float), rel=1e-6)
        assert np.array_equal(m.data, data)
    # values beyond float32 become ±inf pixels: that overflow is still said (it was silenced
    # with the rms's)
    with pytest.warns(RuntimeWarning, match="overflow"):
        write_micrograph(tmp_path / "b.mrc", np.full(SHAPE, 1e39), 0.66)


def test_write_micrograph_gives_the_same_bytes_at_another_time(tmp_path):
    write_micrograph(tmp_path / "a.mrc", np.ones(SHAPE), 0.66, history="hello")
    time.sleep(1.1)  # a label with the clock would differ now
    write_micrograph(tmp_path / "b.mrc", np.ones(SHAPE), 0.66, history="hello")
    assert (tmp_path / "a.mrc").read_bytes() == (tmp_path / "b.mrc").read_bytes()
    with mrcfile.open(tmp_path / "a.mrc") as m:
        assert m.get_labels()[0].startswith("Created by cryostream")


def test_a_long_history_goes_on_in_the_next_labels_and_the_inputs_labels_make_room(tmp_path):
    """A history longer than one label's 80 characters (the steps of a recipe) goes on in the
    next label, from a "+", not cut; an input's labels are kept before it, the last of them
    giving way when the ten are taken."""
    from cryostream.io.mrc import read_header_copy

    history = "cryostream denoise general ensemble+wiener_gain_below_20A+learned_weights+binned_pass"
    write_micrograph(tmp_path / "a.mrc", np.ones(SHAPE), 0.66, history=history)
    with mrcfile.open(tmp_path / "a.mrc") as m:
        labels = m.get_labels()
    assert labels[1:] == ["cryostream denoise general ensemble+wiener_gain_below_20A+"
                          "learned_weights", "+binned_pass"]
    with mrcfile.new(tmp_path / "full.mrc") as m:
        m.set_data(np.ones(SHAPE, np.float32))
        for i in range(10):
            m.header.label[i] = f"input label {i}".encode()
        m.header.nlabl = 10
    write_micrograph(tmp_path / "b.mrc", np.ones(SHAPE), 0.66, history=history,
                     like=read_header_copy(tmp_path / "full.mrc"))
    with mrcfile.open(tmp_path / "b.mrc") as m:
        labels = m.get_labels()
    assert labels == [f"input label {i}" for i in range(8)] + [
        "cryostream denoise general ensemble+wiener_gain_below_20A+learned_weights",
        "+binned_pass"]
    assert read_header(tmp_path / "b.mrc").denoised_by == labels[8]


# --- bad files: each gives an InvalidMicrographError naming the file, problem and fix -------


def _good(tmp_path: Path) -> Path:
    return write_mrc(tmp_path / "good.mrc", np.zeros(SHAPE, np.float32))


def _patch_int(path: Path, offset: int, value: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 4] = struct.pack("<i", value)
    path.write_bytes(bytes(raw))


def test_missing_file(tmp_path):
    with pytest.raises(InvalidMicrographError) as info:
        read_header(tmp_path / "gone.mrc")
    assert str(info.value) == f"{tmp_path / 'gone.mrc'}: no such file; check the path or the glob"


def test_not_an_mrc_file(tmp_path):
    path = tmp_path / "picture.mrc"
    path.write_bytes(b"\x89PNG\r\n" + bytes(2000))
    with pytest.raises(InvalidMicrographError, match="picture.mrc: not a readable MRC file"):
        read_header(path)


def test_too_short_for_a_header(tmp_path):
    path = tmp_path / "stub.mrc"
    path.write_bytes(b"MRC")
    with pytest.raises(InvalidMicrographError, match="stub.mrc: not a readable MRC file"):
        read_header(path)


def test_truncated_data(tmp_path):
    path = _good(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(InvalidMicrographError) as info:
        read_header(path)
    message = str(info.value)
    assert message.startswith(f"{path}: truncated: {1024 + 37 * 29 * 4 - 100} bytes")
    assert message.endswith("copy or download it again")


@pytest.mark.parametrize("mode", [3, 4, 7, 101])
def test_unknown_or_unsupported_mode(tmp_path, mode):
    path = _good(tmp_path)
    _patch_int(path, 12, mode)
    with pytest.raises(InvalidMicrographError) as info:
        read_header(path)
    assert f"MRC mode {mode} is not supported" in str(info.value)
    assert "convert it to one of modes [0, 1, 2, 6, 12]" in str(info.value)


def test_a_stack_is_not_a_micrograph(tmp_path):
    path = write_mrc(tmp_path / "stack.mrc", np.zeros((3, *SHAPE), np.float32))
    with pytest.raises(InvalidMicrographError, match=r"holds 3 sections .*if it is a movie .*"
                       r"motion-correct it first .*if a stack of micrographs, split it"):
        read_header(path)


def test_error_classes():
    assert issubclass(InvalidMicrographError, CryostreamError)
    assert issubclass(InvalidMicrographError, ValueError)


def test_a_zero_sampling_reads_as_an_unset_pixel_size(tmp_path):
    """mx = 0 in the header: the pixel size is unset (0), with no division warning (that
    became an infinite pixel size and a traceback later)."""
    import warnings

    import mrcfile

    from cryostream.io.mrc import read_header

    path = tmp_path / "mx0.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.ones((64, 64), np.float32))
        m.voxel_size = 1.0
    with mrcfile.open(path, "r+", permissive=True) as m:
        m.header.mx = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_header(path).pixel_size_angstrom == 0.0


def test_a_header_that_sizes_no_image_is_said_damaged_not_a_stack(tmp_path, rng):
    """A header of 0 × 0 × 0 (a file cut off while it was written, then its header zeroed) had
    been 'holds 0 sections (nz=0), not one micrograph' with advice about movies."""
    path = tmp_path / "zero.mrc"
    write_mrc(path, rng.normal(size=(64, 64)).astype(np.float32))
    raw = bytearray(path.read_bytes())
    raw[0:12] = struct.pack("<3i", 0, 0, 0)  # nx, ny, nz
    path.write_bytes(bytes(raw[:1024]))
    with pytest.raises(InvalidMicrographError) as caught:
        read_header(path)
    text = str(caught.value)
    assert "its header sizes an empty image (nx=0, ny=0, nz=0)" in text and "zero.mrc" in text
    assert "movie" not in text and "sections" not in text


@pytest.mark.parametrize("suffix", [".tif", ".eer"])
def test_a_movie_named_as_a_micrograph_is_said_to_need_motion_correction(tmp_path, suffix):
    """A STAR file's rlnMicrographName pointing at a movie (TIFF or EER frames) had been 'not a
    readable MRC file (Map ID string not found …)', with the fix to repair it."""
    path = tmp_path / f"movie{suffix}"
    # a little-endian TIFF header, as EPU and SerialEM write movies (EER files are TIFFs too)
    path.write_bytes(b"II*\x00\x08\x00\x00\x00" + bytes(2048))
    with pytest.raises(InvalidMicrographError) as caught:
        read_header(path)
    text = str(caught.value)
    assert f"movie{suffix}: a movie's frames ({suffix}), not an MRC micrograph" in text, text
    assert "motion-correct the movies first" in text and "repair" not in text


def test_a_header_that_says_one_section_of_a_file_holding_more_is_refused(tmp_path):
    """A file holding three sections whose header says one (nz=1: a stack or movie whose
    header was damaged) is refused naming the sections the file has room for, not read as
    its first section alone; a few trailing bytes (less than a section) are no such file."""
    path = _good(tmp_path)
    section = 37 * 29 * 4
    path.write_bytes(path.read_bytes() + bytes(2 * section))
    with pytest.raises(InvalidMicrographError) as info:
        read_header(path)
    message = str(info.value)
    assert message.startswith(f"{path}: holds {1024 + 3 * section} bytes, room for 3 sections")
    assert "header says one (nz=1)" in message and "motion-correct" in message
    trailing = write_mrc(tmp_path / "trailing.mrc", np.zeros(SHAPE, np.float32))
    trailing.write_bytes(trailing.read_bytes() + bytes(100))
    assert read_header(trailing).shape == SHAPE
