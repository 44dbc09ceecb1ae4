"""Class names across collections: the aliases other brain-MRI collections use for our classes,
"tumour" (one of the tumour classes, type unknown), and explicit --class-map renames."""

# The four-class names of brain-tumor-mri/, and what other collections call them.
ALIASES: dict[str, str] = {
    "glioma_tumor": "glioma",
    "glioma_tumour": "glioma",
    "meningioma_tumor": "meningioma",
    "meningioma_tumour": "meningioma",
    "pituitary_tumor": "pituitary",
    "pituitary_tumour": "pituitary",
    "no_tumor": "notumor",
    "no_tumour": "notumor",
    "notumour": "notumor",
    "no": "notumor",  # Br35H: no/
    "yes": "tumour",
    "tumor": "tumour",  # Br35H: yes/ (a tumour of unknown type)
}
ANY_TUMOUR = "tumour"
NO_TUMOUR = "notumor"


def parse_class_map(text: str | None) -> dict[str, str]:
    """ "old=new,old2=new2" -> {"old": "new", "old2": "new2"}."""
    if not text:
        return {}
    pairs = {}
    for item in text.split(","):
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--class-map {text!r}: expected old=new pairs separated by commas, got {item!r}")
        if old.strip() in pairs:
            raise ValueError(f"--class-map {text!r}: {old.strip()!r} is mapped twice")
        pairs[old.strip()] = new.strip()
    return pairs


def check_class_map(class_map: dict[str, str], folder_names: set[str]) -> None:
    """Every --class-map entry must name one of the class folders scored (exactly, case too): an entry
    that maps nothing is a mistake (a typo, or Yes for yes) that would leave its folder unmapped."""
    unused = [old for old in class_map if old not in folder_names]
    if unused and folder_names:  # with no folders at all, the missing data is the error to report
        near = {old: [n for n in folder_names if n.lower() == old.lower()] for old in unused}
        hints = "".join(f" ({old!r}: did you mean {near[old][0]!r}?)" for old in unused if near[old])
        raise ValueError(
            f"--class-map names {', '.join(map(repr, unused))}, but no class folder is named so; the folders "
            f"are {', '.join(sorted(folder_names))}{hints}"
        )


def resolve_class(name: str, classes: list[str], class_map: dict[str, str] | None = None) -> str:
    """The checkpoint class (or ANY_TUMOUR) that a folder named `name` holds: --class-map first, then
    the name itself, then ALIASES. An unknown name is an error listing what is understood."""
    target = (class_map or {}).get(name, name)
    if target not in classes and target != ANY_TUMOUR:
        target = ALIASES.get(target.lower(), target.lower() if target.lower() in classes + [ANY_TUMOUR] else target)
    if target in classes or (target == ANY_TUMOUR and tumour_classes(classes)):
        return target
    known = ", ".join(sorted(ALIASES))
    raise ValueError(
        f"class folder {name!r} is none of the checkpoint's classes ({', '.join(classes)}) "
        f"nor {ANY_TUMOUR!r} nor an alias ({known}); map it with --class-map {name}=<class>"
    )


def tumour_classes(classes: list[str]) -> list[int]:
    """Indices of the tumour classes: every class but the no-tumour one."""
    return [i for i, c in enumerate(classes) if c != NO_TUMOUR] if NO_TUMOUR in classes else []
