/* The VM's implementation of the API backend (see src/api/api.h). */
#ifndef CVISOR_VM_VM_API_H
#define CVISOR_VM_VM_API_H

struct vm;
struct api_backend;

/* Fill b with callbacks serving vm. */
void vm_api_backend(struct vm *vm, struct api_backend *b);

#endif
